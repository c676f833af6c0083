#ifndef CHAT_TESTS_SUPPORT_SCRATCH_DIR_H_
#define CHAT_TESTS_SUPPORT_SCRATCH_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace chat::testing {

// A fresh directory under /tmp (empty path() if it could not be made),
// removed with everything in it when this goes.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix) {
    std::string pattern = "/tmp/" + prefix + "-XXXXXX";
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace chat::testing

#endif  // CHAT_TESTS_SUPPORT_SCRATCH_DIR_H_

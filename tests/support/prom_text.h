#ifndef CHAT_TESTS_SUPPORT_PROM_TEXT_H_
#define CHAT_TESTS_SUPPORT_PROM_TEXT_H_

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

// Reads Prometheus' text exposition format back into samples, so that tests
// can assert on values (promtool checks the format itself).
namespace chat::testing {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

inline absl::StatusOr<std::vector<PromSample>> ParsePromText(const std::string& text) {
  std::vector<PromSample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line.front() == '#') continue;
    PromSample sample;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    sample.name = std::string(line.substr(0, i));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        if (eq == absl::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          return absl::InvalidArgumentError(absl::StrCat("bad labels in: ", line));
        }
        std::string key(line.substr(i, eq - i));
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value.push_back(line[j] == 'n' ? '\n' : line[j]);
          } else {
            value.push_back(line[j]);
          }
        }
        if (j >= line.size()) return absl::InvalidArgumentError(absl::StrCat("open quote: ", line));
        sample.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // '}'
    }
    const std::string rest(line.substr(std::min(i, line.size())));
    char* end = nullptr;
    sample.value = std::strtod(rest.c_str(), &end);
    if (end == rest.c_str()) return absl::InvalidArgumentError(absl::StrCat("no value: ", line));
    out.push_back(std::move(sample));
  }
  return out;
}

// The sum of the samples named `name` whose labels include all of `match`;
// -1 when there is none.
inline double PromValue(const std::vector<PromSample>& samples, const std::string& name,
                        const std::map<std::string, std::string>& match = {}) {
  double sum = 0;
  bool found = false;
  for (const auto& s : samples) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& [k, v] : match) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) all = false;
    }
    if (!all) continue;
    sum += s.value;
    found = true;
  }
  return found ? sum : -1;
}

}  // namespace chat::testing

#endif  // CHAT_TESTS_SUPPORT_PROM_TEXT_H_

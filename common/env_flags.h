#ifndef CHAT_COMMON_ENV_FLAGS_H_
#define CHAT_COMMON_ENV_FLAGS_H_

#include <string>
#include <vector>

namespace chat {

// Parses the command line with Abseil flags, after first giving every flag
// defined outside Abseil the value of the environment variable with the same
// name upper-cased (--listen <- LISTEN). The command line wins over the
// environment. Exits with a message on an invalid value, as ParseCommandLine
// does. Returns the positional arguments.
std::vector<char*> ParseFlagsWithEnv(int argc, char** argv, const std::string& usage);

}  // namespace chat

#endif  // CHAT_COMMON_ENV_FLAGS_H_

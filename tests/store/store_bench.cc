// Commit cost per engine: messages/s committing batches of 1 and of 64
// (group commit), fsync as in production. Not a test: run by hand,
//   build/tests/store/store_bench [seconds per case] [sqlite|postgresql]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

#include "store/open_store.h"
#include "tests/support/postgres_server.h"

namespace {

using chat::store::MessageStore;
using chat::store::NewMessage;

void Measure(const char* engine, const std::string& url, bool fsync, double seconds) {
  chat::store::StoreOptions options;
  options.fsync = fsync;
  for (int batch_size : {1, 64}) {
    absl::StatusOr<std::unique_ptr<MessageStore>> store =
        chat::store::OpenMessageStore(url, options);
    if (!store.ok()) {
      std::fprintf(stderr, "%s: %s\n", engine, std::string(store.status().message()).c_str());
      std::exit(1);
    }
    static int next_id = 0;
    int64_t messages = 0;
    const std::clock_t cpu_start = std::clock();
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      std::vector<NewMessage> batch;
      for (int i = 0; i < batch_size; ++i) {
        // 50 users writing in pairs, a short text, every other one with a key.
        const int n = ++next_id;
        batch.push_back(NewMessage{"m" + std::to_string(n), "user" + std::to_string(n % 50),
                                   "user" + std::to_string((n * 7) % 50),
                                   "hello there, a message of some 40 bytes", 1764000000000,
                                   n % 2 ? "key" + std::to_string(n) : ""});
      }
      absl::StatusOr<std::vector<chat::store::Committed>> r = (*store)->Commit(batch);
      if (!r.ok()) {
        std::fprintf(stderr, "%s: %s\n", engine, std::string(r.status().message()).c_str());
        std::exit(1);
      }
      messages += batch_size;
    }
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // CPU of this process only (for PostgreSQL the server's is not in it).
    const double cpu = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    std::printf("%-22s batch %2d: %8.0f messages/s, %7.1f us/commit, %5.1f client CPU us/message\n",
                engine, batch_size, messages / elapsed, elapsed * 1e6 / (messages / batch_size),
                cpu * 1e6 / messages);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  const std::string only = argc > 2 ? argv[2] : "";  // "sqlite" or "postgresql"
  char dir[] = "/tmp/chat-store-bench-XXXXXX";
  if (mkdtemp(dir) == nullptr) return 1;
  if (only != "postgresql") {
    Measure("sqlite NORMAL", std::string("sqlite:") + dir + "/normal.db", false, seconds);
    Measure("sqlite FULL", std::string("sqlite:") + dir + "/full.db", true, seconds);
  }
  if (only == "sqlite") {
    std::system((std::string("rm -rf ") + dir).c_str());
    return 0;
  }
  absl::StatusOr<std::unique_ptr<chat::testing::PostgresServer>> server =
      chat::testing::PostgresServer::Start(chat::testing::PostgresServer::Options{true});
  if (!server.ok()) {
    std::fprintf(stderr, "postgres: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  Measure("postgresql fsync on", (*server)->Url(), false, seconds);
  std::system((std::string("rm -rf ") + dir).c_str());
  return 0;
}

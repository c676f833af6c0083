// The cost of one gRPC stream hop and nothing else: what any design that puts
// a gRPC bidirectional stream between two processes pays per message before it
// does any work of its own.
//
//   grpc_floor --serve                      echo server; prints "listening on 127.0.0.1:PORT"
//   grpc_floor --target=127.0.0.1:PORT --rate=5000 --seconds=4 [--up=128 --down=320]
//
// The server answers every message of `--up` bytes with one of `--down` bytes
// on the same stream (like message-service answering an EdgeUp with an
// EdgeDown). Both sides run gRPC's async API on one thread that is the only
// poller of its process, as ours do: the client paces its sends with the
// completion queue's own deadline, so no timer thread is involved. The client
// asks the server for its CPU time before and after the measured window and
// prints CPU-µs and voluntary context switches per message for each side.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Usage {
  double cpu_s = 0;
  long vcsw = 0;
};

Usage SelfUsage() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  Usage u;
  u.cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
            static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
  u.vcsw = ru.ru_nvcsw;
  return u;
}

grpc::ByteBuffer Bytes(const std::string& s) {
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

std::string Text(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  (void)b.Dump(&slices);
  std::string out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

std::string Flag(int argc, char** argv, const char* name, const char* fallback) {
  const std::string prefix = std::string("--") + name + "=";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) == 0) return argv[i] + prefix.size();
  }
  return fallback;
}

bool HasFlag(int argc, char** argv, const char* name) {
  const std::string flag = std::string("--") + name;
  for (int i = 1; i < argc; ++i) {
    if (flag == argv[i]) return true;
  }
  return false;
}

enum Tag : intptr_t { kAccept = 1, kRead, kWrite, kStart, kFinish };
void* T(Tag t) { return reinterpret_cast<void*>(t); }

// Echo server. A message starting with '?' asks for the process's CPU time
// and switches so far; anything else is answered with `down` bytes.
int Serve(size_t down) {
  grpc::AsyncGenericService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterAsyncGenericService(&service);
  std::unique_ptr<grpc::ServerCompletionQueue> cq = builder.AddCompletionQueue();
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) return 1;
  std::printf("listening on 127.0.0.1:%d\n", port);
  std::fflush(stdout);

  grpc::GenericServerContext ctx;
  grpc::GenericServerAsyncReaderWriter stream(&ctx);
  service.RequestCall(&ctx, &stream, cq.get(), cq.get(), T(kAccept));
  grpc::ByteBuffer in;
  std::deque<grpc::ByteBuffer> out;
  bool writing = false;
  const std::string answer(down, 'd');
  void* tag = nullptr;
  bool ok = false;
  auto write_next = [&] {
    if (writing || out.empty()) return;
    writing = true;
    stream.Write(out.front(), T(kWrite));
  };
  while (cq->Next(&tag, &ok)) {
    switch (static_cast<Tag>(reinterpret_cast<intptr_t>(tag))) {
      case kAccept:
        if (!ok) return 1;
        stream.Read(&in, T(kRead));
        break;
      case kRead: {
        if (!ok) {
          stream.Finish(grpc::Status::OK, T(kFinish));
          break;
        }
        const std::string got = Text(in);
        if (!got.empty() && got[0] == '?') {
          const Usage u = SelfUsage();
          out.push_back(Bytes("!" + std::to_string(u.cpu_s) + " " + std::to_string(u.vcsw)));
        } else {
          out.push_back(Bytes(answer));
        }
        write_next();  // the answer first, then the next read
        stream.Read(&in, T(kRead));
        break;
      }
      case kWrite:
        writing = false;
        out.pop_front();
        if (ok) write_next();
        break;
      case kFinish:
        server->Shutdown();
        cq->Shutdown();
        break;
      case kStart:
        break;
    }
  }
  return 0;
}

struct Client {
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> stream;
  grpc::ByteBuffer in;
  std::deque<grpc::ByteBuffer> out;
  bool writing = false;
  std::string reply;  // the last '!' answer
  std::deque<Clock::time_point> sent_at;
  std::vector<double> latency_us;
  long answers = 0;
  bool started = false;

  void WriteNext() {
    if (writing || out.empty()) return;
    writing = true;
    stream->Write(out.front(), T(kWrite));
  }
  void Send(grpc::ByteBuffer b) {
    out.push_back(std::move(b));
    WriteNext();
  }
  // Handles one event; false when the stream is gone.
  bool Handle(void* tag, bool ok, bool measuring) {
    switch (static_cast<Tag>(reinterpret_cast<intptr_t>(tag))) {
      case kStart:
        if (!ok) return false;
        started = true;
        stream->Read(&in, T(kRead));
        return true;
      case kRead: {
        if (!ok) return false;
        std::string got = Text(in);
        if (!got.empty() && got[0] == '!') {
          reply = std::move(got);
        } else if (!sent_at.empty()) {
          if (measuring) {
            latency_us.push_back(
                std::chrono::duration<double, std::micro>(Clock::now() - sent_at.front()).count());
          }
          sent_at.pop_front();
          ++answers;
        }
        stream->Read(&in, T(kRead));
        return true;
      }
      case kWrite:
        writing = false;
        out.pop_front();
        if (!ok) return false;
        WriteNext();
        return true;
      default:
        return true;
    }
  }
  // Waits for events until `until`; false when the stream is gone.
  bool RunUntil(Clock::time_point until, bool measuring) {
    void* tag = nullptr;
    bool ok = false;
    while (true) {
      const auto status =
          cq.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + (until - Clock::now()));
      if (status == grpc::CompletionQueue::TIMEOUT) return true;
      if (status == grpc::CompletionQueue::SHUTDOWN) return false;
      if (!Handle(tag, ok, measuring)) return false;
    }
  }
  // Asks the server for its usage; waits for the answer.
  bool ServerUsage(Usage* u) {
    reply.clear();
    Send(Bytes("?"));
    const auto give_up = Clock::now() + std::chrono::seconds(5);
    while (reply.empty() && Clock::now() < give_up) {
      if (!RunUntil(Clock::now() + std::chrono::milliseconds(1), false)) return false;
    }
    if (reply.empty()) return false;
    return std::sscanf(reply.c_str() + 1, "%lf %ld", &u->cpu_s, &u->vcsw) == 2;
  }
};

int Drive(const std::string& target, double rate, double seconds, size_t up) {
  grpc::ChannelArguments args;
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  Client c;
  c.stream = stub.PrepareCall(&ctx, "/floor.Echo/Chat", &c.cq);
  c.stream->StartCall(T(kStart));
  const std::string message(up, 'u');
  const auto interval =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));

  const auto give_up = Clock::now() + std::chrono::seconds(5);
  while (!c.started && Clock::now() < give_up) {
    if (!c.RunUntil(Clock::now() + std::chrono::milliseconds(1), false)) return 1;
  }
  if (!c.started) return 1;
  // Warm up for a second, then measure.
  auto next = Clock::now();
  auto run = [&](Clock::time_point end, bool measuring, long* sent) {
    while (next < end) {
      if (!c.RunUntil(next, measuring)) return false;
      c.sent_at.push_back(Clock::now());
      c.Send(Bytes(message));
      ++*sent;
      next += interval;
    }
    return true;
  };
  long warm = 0;
  if (!run(Clock::now() + std::chrono::seconds(1), false, &warm)) return 1;
  Usage server_before;
  if (!c.ServerUsage(&server_before)) return 1;
  const Usage client_before = SelfUsage();
  const long answers_before = c.answers;
  long sent = 0;
  next = Clock::now();
  const auto start = next;
  if (!run(start +
               std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)),
           true, &sent)) {
    return 1;
  }
  const Usage client_after = SelfUsage();
  Usage server_after;
  if (!c.ServerUsage(&server_after)) return 1;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const long answered = c.answers - answers_before;

  std::vector<double> lat = c.latency_us;
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    return lat.empty() ? 0.0 : lat[static_cast<size_t>(p * (lat.size() - 1))];
  };
  const double n = static_cast<double>(sent);
  std::printf(
      "{\"rate\":%.0f,\"seconds\":%.2f,\"sent\":%ld,\"answered\":%ld,\"up_bytes\":%zu,"
      "\"server_cpu_us_per_msg\":%.1f,\"server_vcsw_per_msg\":%.2f,"
      "\"client_cpu_us_per_msg\":%.1f,\"client_vcsw_per_msg\":%.2f,"
      "\"rtt_us\":{\"p50\":%.0f,\"p99\":%.0f}}\n",
      rate, elapsed, sent, answered, up, (server_after.cpu_s - server_before.cpu_s) * 1e6 / n,
      static_cast<double>(server_after.vcsw - server_before.vcsw) / n,
      (client_after.cpu_s - client_before.cpu_s) * 1e6 / n,
      static_cast<double>(client_after.vcsw - client_before.vcsw) / n, pct(0.5), pct(0.99));
  ctx.TryCancel();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* usage =
      "usage: grpc_floor --serve [--down=N] | --target=HOST:PORT [--rate=N --seconds=N --up=N "
      "--down=N]\n";
  size_t down = 0;
  size_t up = 0;
  double rate = 0;
  double seconds = 0;
  try {
    down = std::stoul(Flag(argc, argv, "down", "320"));
    up = std::stoul(Flag(argc, argv, "up", "128"));
    rate = std::stod(Flag(argc, argv, "rate", "5000"));
    seconds = std::stod(Flag(argc, argv, "seconds", "4"));
  } catch (const std::exception&) {
    std::fprintf(stderr, "grpc_floor: a flag's value is not a number\n%s", usage);
    return 2;
  }
  if (HasFlag(argc, argv, "serve")) return Serve(down);
  const std::string target = Flag(argc, argv, "target", "");
  if (target.empty() || up == 0 || !(rate > 0) || !(seconds > 0)) {
    std::fprintf(stderr, "%s", usage);
    return 2;
  }
  const int status = Drive(target, rate, seconds, up);
  if (status != 0) std::fprintf(stderr, "grpc_floor: the stream to %s failed\n", target.c_str());
  return status;
}

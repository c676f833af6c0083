#include "results.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace bench {

namespace {

struct Field {
  const char* name;
  int64_t Results::*member;
};

constexpr Field kFields[] = {
    {"conns_ok", &Results::conns_ok},
    {"conns_failed", &Results::conns_failed},
    {"disconnects", &Results::disconnects},
    {"pings", &Results::pings},
    {"sent", &Results::sent},
    {"received", &Results::received},
    {"received_in_window", &Results::received_in_window},
    {"out_of_order", &Results::out_of_order},
    {"gaps", &Results::gaps},
    {"t_first", &Results::t_first},
    {"t_last", &Results::t_last},
};

}  // namespace

std::string Results::Serialize() const {
  std::ostringstream out;
  for (const Field& f : kFields) out << f.name << ' ' << this->*f.member << '\n';
  if (latency.count())
    out << "hist " << latency.min() << ' ' << latency.max() << ' '
        << static_cast<int64_t>(latency.sum()) << '\n';
  const auto& counts = latency.counts();
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i]) out << "h " << i << ' ' << counts[i] << '\n';
  }
  for (const auto& [name, count] : events) out << "e " << count << ' ' << name << '\n';
  for (const auto& [name, value] : values) out << "v " << value << ' ' << name << '\n';
  out << "END\n";
  return out.str();
}

bool Results::Read(FILE* in) {
  char line[4096];
  while (std::fgets(line, sizeof line, in)) {
    line[std::strcspn(line, "\n")] = '\0';
    std::string_view text(line);
    if (text == "END") return true;
    size_t sp = text.find(' ');
    if (sp == std::string_view::npos) continue;
    std::string_view key = text.substr(0, sp);
    const char* rest = line + sp + 1;
    if (key == "h") {
      char* end;
      unsigned long long index = std::strtoull(rest, &end, 10);
      latency.Add(index, std::strtoull(end, nullptr, 10));
    } else if (key == "hist") {
      char* end;
      long long min = std::strtoll(rest, &end, 10);
      long long max = std::strtoll(end, &end, 10);
      long long sum = std::strtoll(end, nullptr, 10);
      latency.MergeExtremes(min, max, static_cast<double>(sum));
    } else if (key == "e" || key == "v") {
      char* end;
      long long count = std::strtoll(rest, &end, 10);
      (key == "e" ? events : values)[std::string(end + 1)] += count;
    } else {
      for (const Field& f : kFields) {
        if (key == f.name) this->*f.member = std::strtoll(rest, nullptr, 10);
      }
    }
  }
  return false;
}

void Results::Merge(const Results& o) {
  for (const Field& f : kFields) {
    if (f.member == &Results::t_first) {
      if (o.t_first && (!t_first || o.t_first < t_first)) t_first = o.t_first;
    } else if (f.member == &Results::t_last) {
      t_last = std::max(t_last, o.t_last);
    } else {
      this->*f.member += o.*f.member;
    }
  }
  const auto& counts = o.latency.counts();
  for (size_t i = 0; i < counts.size(); ++i) latency.Add(i, counts[i]);
  if (o.latency.count()) latency.MergeExtremes(o.latency.min(), o.latency.max(), o.latency.sum());
  for (const auto& [name, count] : o.events) events[name] += count;
  for (const auto& [name, value] : o.values) values[name] += value;
}

void WriteAll(int fd, const std::string& text) {
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = write(fd, text.data() + off, text.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace bench

// Log-linear latency histogram in the manner of HdrHistogram: 128 linear
// sub-buckets per power of two, so any recorded value is reported within
// 0.8 % of its true value, from 1 ns up to ~18 minutes, in 35 KiB.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace bench {

class Histogram {
 public:
  static constexpr int kHalfBits = 7;  // 128 sub-buckets per octave
  static constexpr int64_t kHalf = int64_t{1} << kHalfBits;
  static constexpr int kMaxShift = 34;  // values up to 2^41 ns
  static constexpr size_t kBuckets = (kMaxShift + 2) * kHalf;

  Histogram() : counts_(kBuckets, 0) {}

  void Record(int64_t v) {
    if (v < 0) v = 0;
    ++counts_[Index(v)];
    ++total_;
    max_ = std::max(max_, v);
    min_ = std::min(min_, v);
    sum_ += static_cast<double>(v);
  }

  void Add(size_t index, uint64_t count) {
    if (index >= kBuckets || count == 0) return;
    counts_[index] += count;
    total_ += count;
  }
  void MergeExtremes(int64_t min, int64_t max, double sum) {
    min_ = std::min(min_, min);
    max_ = std::max(max_, max);
    sum_ += sum;
  }

  uint64_t count() const { return total_; }
  int64_t max() const { return total_ ? max_ : 0; }
  int64_t min() const { return total_ ? min_ : 0; }
  double sum() const { return sum_; }
  double mean() const { return total_ ? sum_ / static_cast<double>(total_) : 0; }
  const std::vector<uint64_t>& counts() const { return counts_; }

  // Smallest recorded value v such that at least q of all values are <= v,
  // reported as the bucket's upper edge (never above the true maximum).
  int64_t Percentile(double q) const {
    if (total_ == 0) return 0;
    auto rank = static_cast<uint64_t>(q * static_cast<double>(total_) + 0.5);
    rank = std::clamp<uint64_t>(rank, 1, total_);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(UpperEdge(i), max_);
    }
    return max_;
  }

  static size_t Index(int64_t v) {
    if (v < 2 * kHalf) return static_cast<size_t>(v);
    int shift = 63 - __builtin_clzll(static_cast<uint64_t>(v)) - kHalfBits;
    if (shift > kMaxShift) return kBuckets - 1;
    return static_cast<size_t>(shift) * kHalf + static_cast<size_t>(v >> shift);
  }
  static int64_t UpperEdge(size_t i) {
    if (i < static_cast<size_t>(2 * kHalf)) return static_cast<int64_t>(i);
    int shift = static_cast<int>(i >> kHalfBits) - 1;
    int64_t mant = static_cast<int64_t>(i) - shift * kHalf;
    return ((mant + 1) << shift) - 1;
  }

 private:
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  int64_t max_ = 0;
  int64_t min_ = INT64_MAX;
  double sum_ = 0;
};

}  // namespace bench

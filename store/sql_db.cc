#include "store/sql_db.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace chat::store {

const std::string& SqlRows::Text(size_t row, int col) const {
  static const std::string kEmpty;
  const std::optional<std::string>& cell = rows_[row][col];
  return cell.has_value() ? *cell : kEmpty;
}

int64_t SqlRows::Int(size_t row, int col) const {
  const std::optional<std::string>& cell = rows_[row][col];
  return cell.has_value() ? std::strtoll(cell->c_str(), nullptr, 10) : 0;
}

void AppendInserts(absl::string_view head, size_t width, std::vector<SqlParam> values,
                   std::vector<SqlStatement>& out, absl::string_view tail) {
  constexpr size_t kMaxRows = 64;
  size_t row = 0;
  const size_t rows = values.size() / width;
  while (row < rows) {
    size_t n = kMaxRows;
    while (n > rows - row) n /= 2;
    SqlStatement s;
    s.sql = absl::StrCat(head, " VALUES ");
    for (size_t r = 0; r < n; ++r) {
      absl::StrAppend(&s.sql, r == 0 ? "(" : ", (");
      for (size_t c = 0; c < width; ++c) {
        absl::StrAppend(&s.sql, c == 0 ? "$" : ", $", r * width + c + 1);
      }
      absl::StrAppend(&s.sql, ")");
    }
    if (!tail.empty()) absl::StrAppend(&s.sql, " ", tail);
    s.params.assign(std::make_move_iterator(values.begin() + row * width),
                    std::make_move_iterator(values.begin() + (row + n) * width));
    out.push_back(std::move(s));
    row += n;
  }
}

}  // namespace chat::store

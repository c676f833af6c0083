#include "store/sql_db.h"

#include <cstdlib>

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

}  // namespace chat::store

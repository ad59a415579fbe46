// Setup/control-path error type of controlplane/: a message a person can act on.
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace zt::cp {

struct Error {
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(std::string msg) { return std::unexpected(Error{std::move(msg)}); }

}  // namespace zt::cp

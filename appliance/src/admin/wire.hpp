// The admin socket's wire format (proto/admin.proto): a 4-byte big-endian length, then one
// serialized Request or Response. One request and one response per connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

#include "admin.pb.h"

namespace zt::admin {

inline constexpr std::uint32_t kProtocolVersion = 1;
inline constexpr std::uint32_t kMaxRequestBytes = 64 * 1024;          // a request is a few words
inline constexpr std::uint32_t kMaxResponseBytes = 64 * 1024 * 1024;  // a flow dump at --limit max
inline constexpr const char* kDefaultSocket = "/run/ztgate/admin.sock";

// The read-only socket next to an admin socket: PATH.ro.
std::string read_only_path(const std::string& admin_path);

// 4-byte big-endian length + bytes.
std::string frame(const std::string& payload);
// Length announced by a 4-byte header.
std::uint32_t frame_length(const unsigned char header[4]) noexcept;

// Client side: connect to `path`, send `req`, wait for the response until `timeout`.
// Errors carry errno-style detail for the caller to phrase; `connect_errno` is set when the
// connection itself failed (ENOENT, ECONNREFUSED, EACCES).
struct CallError {
  std::string message;
  int connect_errno = 0;
};
std::expected<Response, CallError> call(const std::string& path, const Request& req,
                                        std::chrono::milliseconds timeout);

}  // namespace zt::admin

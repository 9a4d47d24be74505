#pragma once
// One client TLS connection to an EST server as Asio coroutines: used synchronously by EstSession
// (one io_context per session) and concurrently by the fleet (many connections on one io_context).
// Private to src/device.
#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "hallmark/device/est_client.hpp"

namespace hallmark::device::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

// One SSL_CTX for every connection of one kind: trust anchors, TLS versions, no session tickets.
// The client certificate is set per connection (SSL_use_*), so a fleet of devices shares it.
class ClientTls final {
 public:
  [[nodiscard]] static Result<std::shared_ptr<ClientTls>> make(const std::vector<x509::Certificate>& trust,
                                                               bool tls13_only);
  [[nodiscard]] asio::ssl::context& asio() noexcept { return context_; }

 private:
  ClientTls();
  asio::ssl::context context_;
};

class Connection final {
 public:
  Connection(asio::any_io_executor executor, ClientTls& tls, std::chrono::milliseconds timeout);

  // TCP connect, then the TLS handshake with `identity` as client certificate (none when null).
  // The server's certificate must chain to the trust anchors and name `server.host`.
  [[nodiscard]] asio::awaitable<Status> connect(const std::vector<tcp::endpoint>& endpoints,
                                                const ServerUrl& server, const Identity* identity);
  [[nodiscard]] asio::awaitable<Result<EstReply>> request(beast::http::verb verb, std::string target,
                                                          std::string body, std::string content_type,
                                                          const Secret* basic_password);
  void close() noexcept;

  [[nodiscard]] Result<std::string> channel_binding() const;
  [[nodiscard]] std::string tls_version() const;

 private:
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::chrono::milliseconds timeout_;
  std::string host_;
};

// The same request a session sends, with its media types.
[[nodiscard]] asio::awaitable<Result<EstReply>> est_get(Connection& c, const ServerUrl& server,
                                                        std::string_view operation);
[[nodiscard]] asio::awaitable<Result<EstReply>> est_post_csr(Connection& c, const ServerUrl& server,
                                                             std::string_view operation, const x509::Csr& csr,
                                                             const Secret* basic_password);

// Sets the client certificate chain and key on one SSL object.
[[nodiscard]] Status use_identity(SSL* ssl, const Identity& identity);

}  // namespace hallmark::device::detail

#include "connection.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <nlohmann/json.hpp>

#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/handle.hpp"

namespace hallmark::device::detail {

namespace http = beast::http;

namespace {

constexpr std::size_t kMaxBodyBytes = 1 << 20;
constexpr std::uint32_t kMaxHeaderBytes = 16384;

std::string tls_error(std::string_view what, const beast::error_code& ec) {
  return fmt::format("{}: {}", what, ec.message());
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view v) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  long n = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || n < 0) return std::nullopt;
  return std::chrono::seconds{std::min(n, 86400L)};
}

}  // namespace

ClientTls::ClientTls() : context_(asio::ssl::context::tls_client) {}

Result<std::shared_ptr<ClientTls>> ClientTls::make(const std::vector<x509::Certificate>& trust,
                                                   bool tls13_only) {
  if (trust.empty()) return fail(Errc::invalid_input, "no trust anchor for the server");
  std::shared_ptr<ClientTls> tls(new ClientTls());
  SSL_CTX* ctx = tls->context_.native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION) != 1) {
    return crypto::openssl_fail(Errc::internal, "TLS client: minimum version");
  }
  // Devices rarely resume, and a ticket costs the server CPU.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  if (SSL_CTX_set1_groups_list(ctx, "X25519:P-256") != 1) {
    return crypto::openssl_fail(Errc::internal, "TLS client: groups");
  }
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (const auto& anchor : trust) {
    if (X509_STORE_add_cert(store, anchor.native()) != 1) {
      ERR_clear_error();  // a duplicate anchor is harmless
    }
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  return tls;
}

Status use_identity(SSL* ssl, const Identity& identity) {
  if (identity.chain.empty() || !identity.key) return fail(Errc::invalid_input, "client identity is empty");
  if (SSL_use_certificate(ssl, identity.chain.front().native()) != 1) {
    return crypto::openssl_fail(Errc::invalid_input, "client certificate");
  }
  if (SSL_use_PrivateKey(ssl, identity.key->native_private_key()) != 1) {
    return crypto::openssl_fail(Errc::invalid_input, "client key does not match its certificate");
  }
  for (std::size_t i = 1; i < identity.chain.size(); ++i) {
    if (SSL_add1_chain_cert(ssl, identity.chain[i].native()) != 1) {
      return crypto::openssl_fail(Errc::internal, "client certificate chain");
    }
  }
  return {};
}

Connection::Connection(asio::any_io_executor executor, ClientTls& tls, std::chrono::milliseconds timeout)
    : stream_(std::move(executor), tls.asio()), timeout_(timeout) {}

asio::awaitable<Status> Connection::connect(const std::vector<tcp::endpoint>& endpoints,
                                            const ServerUrl& server, const Identity* identity) {
  host_ = server.host;
  beast::error_code ec;
  auto& layer = beast::get_lowest_layer(stream_);
  layer.expires_after(timeout_);
  co_await layer.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return fail(Errc::unavailable, tls_error(fmt::format("connect to {}", server.to_string()), ec));
  layer.socket().set_option(tcp::no_delay(true), ec);

  SSL* ssl = stream_.native_handle();
  boost::system::error_code not_ip;
  (void)asio::ip::make_address(server.host, not_ip);
  if (not_ip) {
    if (SSL_set_tlsext_host_name(ssl, server.host.c_str()) != 1 ||
        SSL_set1_host(ssl, server.host.c_str()) != 1) {
      co_return crypto::openssl_fail(Errc::invalid_input, "server name");
    }
  } else if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server.host.c_str()) != 1) {
    co_return crypto::openssl_fail(Errc::invalid_input, "server address");
  }
  if (identity != nullptr) {
    if (auto s = use_identity(ssl, *identity); !s) co_return s;
  }
  layer.expires_after(timeout_);
  co_await stream_.async_handshake(asio::ssl::stream_base::client,
                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      co_return fail(Errc::unauthenticated,
                     fmt::format("the server's certificate does not verify against the trust anchor: {}",
                                 X509_verify_cert_error_string(verify)));
    }
    co_return fail(Errc::unavailable,
                   tls_error(fmt::format("TLS handshake with {}", server.to_string()), ec));
  }
  co_return Status{};
}

asio::awaitable<Result<EstReply>> Connection::request(http::verb verb, std::string target, std::string body,
                                                      std::string content_type,
                                                      const Secret* basic_password) {
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, host_);
  req.set(http::field::user_agent, "hallmark-device/0.1");
  req.keep_alive(true);
  if (!content_type.empty()) {
    req.set(http::field::content_type, content_type);
    req.set("Content-Transfer-Encoding", "base64");
  }
  if (basic_password != nullptr) {
    Secret credentials("device:" + std::string(basic_password->reveal()));
    Secret header("Basic " + crypto::base64_encode(as_bytes(credentials.reveal())));
    req.set(http::field::authorization, header.reveal());
  }
  req.body() = std::move(body);
  req.prepare_payload();

  beast::error_code ec;
  auto& layer = beast::get_lowest_layer(stream_);
  layer.expires_after(timeout_);
  co_await http::async_write(stream_, req, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return fail(Errc::unavailable, tls_error(fmt::format("sending {}", target), ec));

  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxBodyBytes);
  parser.header_limit(kMaxHeaderBytes);
  layer.expires_after(timeout_);
  co_await http::async_read(stream_, buffer_, parser, asio::redirect_error(asio::use_awaitable, ec));
  // The head arrived but the connection closed before the body it announced: a lost answer (retried,
  // with the same key), said as such rather than as Beast's "partial message".
  if (ec && parser.is_header_done() &&
      (ec == http::error::partial_message || ec == asio::ssl::error::stream_truncated)) {
    const auto announced = parser.content_length();
    co_return fail(Errc::unavailable,
                   fmt::format("the answer to {} is truncated: the connection closed after {} of the {} "
                               "body bytes announced",
                               target, parser.get().body().size(),
                               announced ? std::to_string(*announced) : std::string("(unknown)")));
  }
  if (ec) co_return fail(Errc::unavailable, tls_error(fmt::format("reading the answer to {}", target), ec));
  auto res = parser.release();
  EstReply r;
  r.status = res.result_int();
  r.content_type = std::string(res[http::field::content_type]);
  r.request_id = std::string(res["X-Request-Id"]);
  if (auto it = res.find(http::field::retry_after); it != res.end())
    r.retry_after = parse_retry_after(it->value());
  r.body = std::move(res.body());
  if (r.content_type.starts_with("application/problem+json")) {
    const auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_object()) {
      if (auto c = j.find("code"); c != j.end() && c->is_string()) r.problem_code = c->get<std::string>();
      if (auto d = j.find("detail"); d != j.end() && d->is_string()) r.problem_detail = d->get<std::string>();
    }
  }
  co_return r;
}

void Connection::close() noexcept {
  beast::error_code ec;
  beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ec);
  beast::get_lowest_layer(stream_).close();
}

Result<std::string> Connection::channel_binding() const {
  SSL* ssl = const_cast<Connection*>(this)->stream_.native_handle();
  if (SSL_version(ssl) == TLS1_3_VERSION) {
    static constexpr char kLabel[] = "EXPORTER-Channel-Binding";
    Bytes out(32);
    if (SSL_export_keying_material(ssl, reinterpret_cast<unsigned char*>(out.data()), out.size(), kLabel,
                                   sizeof kLabel - 1, nullptr, 0, 0) != 1) {
      return crypto::openssl_fail(Errc::internal, "tls-exporter");
    }
    return crypto::base64_encode(out);
  }
  // tls-unique: the first Finished of the handshake, ours as a client on a full handshake.
  unsigned char buf[EVP_MAX_MD_SIZE];
  const std::size_t n = SSL_session_reused(ssl) != 0 ? SSL_get_peer_finished(ssl, buf, sizeof buf)
                                                     : SSL_get_finished(ssl, buf, sizeof buf);
  if (n == 0) return fail(Errc::internal, "no tls-unique on this connection");
  return crypto::base64_encode(ByteView(reinterpret_cast<const std::byte*>(buf), n));
}

std::string Connection::tls_version() const {
  return SSL_get_version(const_cast<Connection*>(this)->stream_.native_handle());
}

asio::awaitable<Result<EstReply>> est_get(Connection& c, const ServerUrl& server,
                                          std::string_view operation) {
  co_return co_await c.request(http::verb::get, server.path(operation), {}, {}, nullptr);
}

asio::awaitable<Result<EstReply>> est_post_csr(Connection& c, const ServerUrl& server,
                                               std::string_view operation, const x509::Csr& csr,
                                               const Secret* basic_password) {
  co_return co_await c.request(http::verb::post, server.path(operation), crypto::base64_encode(csr.to_der()),
                               "application/pkcs10", basic_password);
}

}  // namespace hallmark::device::detail

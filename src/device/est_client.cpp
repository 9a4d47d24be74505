#include "hallmark/device/est_client.hpp"

#include <fmt/format.h>
#include <openssl/asn1.h>
#include <openssl/objects.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/verb.hpp>
#include <exception>

#include "connection.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/handle.hpp"

namespace hallmark::device {

namespace {

bool is_alias_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

// Runs one coroutine to completion on `io`.
template <class T>
T run_sync(boost::asio::io_context& io, boost::asio::awaitable<T> task) {
  std::optional<T> out;
  std::exception_ptr error;
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T value) {
    error = e;
    if (!e) out.emplace(std::move(value));
  });
  io.restart();
  io.run();
  if (error) std::rethrow_exception(error);
  return std::move(*out);
}

// Why `der` is shorter than the value its header declares; empty when it is not (or is not DER).
std::string der_shortfall(ByteView der) {
  constexpr std::string_view kCutHeader = "its PKCS#7 header is cut short";
  if (der.size() < 2) return der.empty() ? std::string() : std::string(kCutHeader);
  const auto first = static_cast<unsigned char>(der[1]);
  std::size_t header = 2;
  std::size_t length = first;
  if (first >= 0x80) {
    const std::size_t n = first & 0x7f;
    if (n == 0 || n > 4) return {};
    if (der.size() < 2 + n) return std::string(kCutHeader);
    header += n;
    length = 0;
    for (std::size_t i = 0; i < n; ++i) length = (length << 8) | static_cast<unsigned char>(der[2 + i]);
  }
  if (header + length <= der.size()) return {};
  return fmt::format("its PKCS#7 declares {} bytes, {} arrived", header + length, der.size());
}

}  // namespace

Result<ServerUrl> ServerUrl::parse(std::string_view url) {
  ServerUrl u;
  const auto bad = [&](std::string_view why) {
    return fail(Errc::invalid_input, fmt::format("server URL '{}': {}", url, why));
  };
  std::string_view rest = url;
  if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
  } else if (rest.find("://") != std::string_view::npos) {
    return bad("only https:// is supported");
  }
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  if (authority.empty()) return bad("no host");
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 address");
    u.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (!authority.empty()) {
      if (authority.front() != ':') return bad("junk after the IPv6 address");
      u.port = std::string(authority.substr(1));
    }
  } else {
    const auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) u.port = std::string(authority.substr(colon + 1));
  }
  if (u.host.empty()) return bad("no host");
  if (u.port.empty() || u.port.size() > 5 || u.port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(u.port) > 65535 || std::stoi(u.port) == 0) {
    return bad("bad port");
  }
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (!path.empty() && path != "/") {
    constexpr std::string_view kPrefix = "/.well-known/est";
    if (!path.starts_with(kPrefix)) return bad("the path must be /.well-known/est[/<alias>]");
    path.remove_prefix(kPrefix.size());
    if (!path.empty()) {
      if (path.front() != '/') return bad("the path must be /.well-known/est[/<alias>]");
      path.remove_prefix(1);
      if (path.empty() || path.size() > 63 || !std::all_of(path.begin(), path.end(), is_alias_char)) {
        return bad("an alias is [a-z0-9-]{1,63}");
      }
      u.alias = std::string(path);
    }
  }
  return u;
}

std::string ServerUrl::path(std::string_view operation) const {
  return alias.empty() ? fmt::format("/.well-known/est/{}", operation)
                       : fmt::format("/.well-known/est/{}/{}", alias, operation);
}

std::string ServerUrl::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return fmt::format("https://{}{}{}:{}/.well-known/est{}{}", v6 ? "[" : "", host, v6 ? "]" : "", port,
                     alias.empty() ? "" : "/", alias);
}

ServerUrl ServerUrl::with_alias(std::string alias_name) const {
  ServerUrl u = *this;
  u.alias = std::move(alias_name);
  return u;
}

Error EstReply::to_error(std::string_view operation) const {
  Errc code = Errc::internal;
  if (status == 400 || status == 413 || status == 415) {
    code = Errc::invalid_input;
  } else if (status == 401) {
    code = Errc::unauthenticated;
  } else if (status == 403) {
    code = Errc::forbidden;
  } else if (status == 404) {
    code = Errc::not_found;
  } else if (status == 409) {
    code = Errc::conflict;
  } else if (status == 202 || status == 503 || status == 502 || status == 504) {
    code = Errc::unavailable;
  }
  std::string text = fmt::format("{}: server answered {}", operation, status);
  if (!problem_code.empty()) text += " " + problem_code;
  if (!problem_detail.empty()) text += ": " + problem_detail;
  if (status == 202) text += " (pending approval)";
  if (retry_after) text += fmt::format(" (retry after {}s)", retry_after->count());
  return Error{code, std::move(text)};
}

bool CsrAttrs::has(std::string_view oid) const {
  return std::find(oids.begin(), oids.end(), oid) != oids.end();
}

std::string attribute_name(std::string_view oid) {
  static constexpr std::pair<std::string_view, std::string_view> kKnown[] = {
      {"2.5.4.5", "serialNumber"},
      {"2.5.4.3", "CN"},
      {"2.5.4.10", "O"},
      {"2.5.4.11", "OU"},
      {"0.9.2342.19200300.100.1.1", "UID"},
      {"2.5.4.12", "title"},
      {"2.5.4.65", "pseudonym"},
      {"2.5.4.41", "name"}};
  for (const auto& [o, n] : kKnown) {
    if (o == oid) return std::string(n);
  }
  return std::string(oid);
}

Result<CsrAttrs> parse_csr_attrs(ByteView der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  using SeqPtr =
      std::unique_ptr<ASN1_SEQUENCE_ANY,
                      decltype([](ASN1_SEQUENCE_ANY* s) { sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free); })>;
  SeqPtr seq(d2i_ASN1_SEQUENCE_ANY(nullptr, &p, static_cast<long>(der.size())));
  if (!seq || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return crypto::openssl_fail(Errc::invalid_input, "csrattrs: not a DER SEQUENCE");
  }
  const auto oid_text = [](const ASN1_OBJECT* o) {
    char buf[128];
    const int n = OBJ_obj2txt(buf, sizeof buf, o, 1);
    return n > 0 && n < static_cast<int>(sizeof buf) ? std::string(buf, n) : std::string();
  };
  CsrAttrs out;
  for (int i = 0; i < sk_ASN1_TYPE_num(seq.get()); ++i) {
    const ASN1_TYPE* t = sk_ASN1_TYPE_value(seq.get(), i);
    if (t->type == V_ASN1_OBJECT) {
      out.oids.push_back(oid_text(t->value.object));
    } else if (t->type == V_ASN1_SEQUENCE) {
      // Attribute ::= SEQUENCE { type OBJECT IDENTIFIER, values SET OF ... }: take its type.
      const auto* q = t->value.sequence->data;
      SeqPtr attr(d2i_ASN1_SEQUENCE_ANY(nullptr, &q, t->value.sequence->length));
      if (!attr || sk_ASN1_TYPE_num(attr.get()) < 1 ||
          sk_ASN1_TYPE_value(attr.get(), 0)->type != V_ASN1_OBJECT) {
        return fail(Errc::invalid_input, "csrattrs: an Attribute without a type");
      }
      out.oids.push_back(oid_text(sk_ASN1_TYPE_value(attr.get(), 0)->value.object));
    } else {
      return fail(Errc::invalid_input, "csrattrs: an element that is neither an OID nor an Attribute");
    }
    if (out.oids.back().empty()) return fail(Errc::invalid_input, "csrattrs: unprintable OID");
  }
  return out;
}

Result<std::vector<x509::Certificate>> decode_certs_only(const EstReply& reply, std::string_view operation) {
  if (!reply.ok()) return std::unexpected(reply.to_error(operation));
  if (!reply.content_type.starts_with("application/pkcs7-mime")) {
    return fail(Errc::invalid_input,
                fmt::format("{}: expected application/pkcs7-mime, got '{}'", operation, reply.content_type));
  }
  auto der = crypto::base64_decode(reply.body);
  if (!der) {
    return fail(Errc::invalid_input,
                fmt::format("{}: the answer is not base64, truncated or corrupt ({}); refused", operation,
                            der.error().detail));
  }
  // A body cut short at a base64 boundary decodes, but to less DER than its header declares.
  if (const auto why = der_shortfall(*der); !why.empty()) {
    return fail(Errc::invalid_input, fmt::format("{}: the answer is truncated: {}; refused", operation, why));
  }
  auto certs = x509::parse_pkcs7_certs_only(*der);
  if (!certs) return std::unexpected(certs.error().with_context(operation));
  if (certs->empty())
    return fail(Errc::invalid_input, fmt::format("{}: the answer holds no certificate", operation));
  return certs;
}

struct EstSession::State {
  boost::asio::io_context io;
  std::shared_ptr<detail::ClientTls> tls;
  std::optional<detail::Connection> connection;
  ServerUrl server;
};

EstSession::EstSession(std::unique_ptr<State> state) : state_(std::move(state)) {}

EstSession::~EstSession() {
  if (state_ && state_->connection) state_->connection->close();
}

Result<std::unique_ptr<EstSession>> EstSession::open(const ClientOptions& options, const Identity* identity) {
  auto state = std::make_unique<State>();
  state->server = options.server;
  state->tls = HM_TRY(detail::ClientTls::make(options.trust, options.tls13_only));
  boost::system::error_code ec;
  detail::tcp::resolver resolver(state->io);
  const auto results = resolver.resolve(options.server.host, options.server.port, ec);
  if (ec) {
    return fail(Errc::unavailable, fmt::format("cannot resolve {}: {}", options.server.host, ec.message()));
  }
  std::vector<detail::tcp::endpoint> endpoints;
  for (const auto& r : results) endpoints.push_back(r.endpoint());
  state->connection.emplace(state->io.get_executor(), *state->tls, options.timeout);
  HM_TRY_VOID(run_sync(state->io, state->connection->connect(endpoints, options.server, identity)));
  return std::unique_ptr<EstSession>(new EstSession(std::move(state)));
}

Result<EstReply> EstSession::get(std::string_view operation) {
  return run_sync(state_->io, detail::est_get(*state_->connection, state_->server, operation));
}

Result<EstReply> EstSession::post_csr(std::string_view operation, const x509::Csr& csr,
                                      const Secret* basic_password) {
  return run_sync(state_->io,
                  detail::est_post_csr(*state_->connection, state_->server, operation, csr, basic_password));
}

Result<std::vector<x509::Certificate>> EstSession::cacerts() {
  const auto reply = HM_TRY(get("cacerts"));
  return decode_certs_only(reply, "cacerts");
}

Result<CsrAttrs> EstSession::csrattrs() {
  const auto reply = HM_TRY(get("csrattrs"));
  if (reply.status == 204 || reply.status == 404) {
    if (reply.status == 404 && reply.problem_code != "unknown-operation")
      return std::unexpected(reply.to_error("csrattrs"));
    return CsrAttrs{};
  }
  if (!reply.ok()) return std::unexpected(reply.to_error("csrattrs"));
  auto der = crypto::base64_decode(reply.body);
  if (!der) return fail(Errc::invalid_input, "csrattrs: the answer is not base64");
  if (der->empty()) return CsrAttrs{};
  return parse_csr_attrs(*der);
}

Result<std::string> EstSession::channel_binding() const {
  return state_->connection->channel_binding();
}

std::string EstSession::tls_version() const {
  return state_->connection->tls_version();
}

}  // namespace hallmark::device

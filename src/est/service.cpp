#include <fmt/format.h>

#include <array>

#include "hallmark/core/log.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/est/server.hpp"

namespace hallmark::est {

namespace {

enum class Op { cacerts, csrattrs, simpleenroll, simplereenroll, serverkeygen, fullcmc };

struct OpInfo {
  std::string_view name;
  Op op;
  std::string_view method;
};
constexpr std::array<OpInfo, 6> kOps{{{"cacerts", Op::cacerts, "GET"},
                                      {"csrattrs", Op::csrattrs, "GET"},
                                      {"simpleenroll", Op::simpleenroll, "POST"},
                                      {"simplereenroll", Op::simplereenroll, "POST"},
                                      {"serverkeygen", Op::serverkeygen, "POST"},
                                      {"fullcmc", Op::fullcmc, "POST"}}};

const OpInfo* find_op(std::string_view name) {
  for (const auto& o : kOps) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

std::string_view audit_action(Op op) {
  switch (op) {
    case Op::simplereenroll: return "reenroll";
    case Op::serverkeygen: return "serverkeygen";
    case Op::cacerts: return "cacerts";
    case Op::csrattrs: return "csrattrs";
    case Op::fullcmc: return "fullcmc";
    case Op::simpleenroll: return "enroll";
  }
  return "enroll";
}

bool is_enrollment(Op op) {
  return op == Op::simpleenroll || op == Op::simplereenroll || op == Op::serverkeygen;
}

http::Response certs_response(std::string body) {
  http::Response r;
  r.status = 200;
  r.headers.set("Content-Type", std::string(kCertsOnly));
  r.headers.set("Content-Transfer-Encoding", "base64");
  r.body = std::move(body);
  return r;
}

ra::RequestContext context_of(const http::Request& request, std::string_view alias) {
  ra::RequestContext c;
  c.alias = std::string(alias);
  c.request_id = request.request_id;
  c.peer = to_peer(request.peer);
  return c;
}

ra::Refusal refusal(Errc code, std::string problem, std::string reason) {
  return ra::Refusal{code, std::move(problem), std::move(reason), std::nullopt};
}

}  // namespace

bool EstService::answers_without_store(const http::Request& request) {
  static constexpr std::string_view kPrefix = "/.well-known/est/";
  if (request.method != "GET" || request.spoofed_client_cert_header) return false;
  std::string_view path = request.path();
  if (!path.starts_with(kPrefix)) return false;
  path.remove_prefix(kPrefix.size());
  if (const auto slash = path.find('/'); slash != std::string_view::npos) path.remove_prefix(slash + 1);
  return path == "cacerts" || path == "csrattrs";
}

void EstService::install(http::Router& router) const {
  for (const auto* method : {"GET", "POST"}) {
    router.add(method, "/.well-known/est/{op}", [this](const http::Request& r, const http::PathParams& p) {
      return handle(r, {}, p.get("op"));
    });
    router.add(method, "/.well-known/est/{alias}/{op}",
               [this](const http::Request& r, const http::PathParams& p) {
                 return handle(r, p.get("alias"), p.get("op"));
               });
  }
}

http::Response EstService::handle(const http::Request& request, std::string_view alias,
                                  std::string_view operation) const {
  const auto* op = find_op(operation);
  if (op == nullptr) {
    return http::problem(404, problem::kUnknownOperation,
                         fmt::format("'{}' is not an EST operation (cacerts, csrattrs, simpleenroll, "
                                     "simplereenroll, serverkeygen)",
                                     operation));
  }
  if (request.method != op->method) {
    auto r = http::problem(405, problem::kMethodNotAllowed, fmt::format("{} takes {}", op->name, op->method));
    r.headers.set("Allow", std::string(op->method));
    return r;
  }
  const bool enrolling = is_enrollment(op->op);
  // The alias segment is taken raw ("%2F", ".." stay as they are): anything not configured is unknown.
  const ra::Alias* a =
      ra::is_valid_alias_name(alias) || alias.empty() ? registrar_.find_alias(alias) : nullptr;
  if (a == nullptr) {
    auto r = refusal(Errc::not_found, ra::problem::kUnknownAlias,
                     alias.empty()
                         ? std::string("no default EST alias is configured; use /.well-known/est/<alias>/")
                         : fmt::format("no EST alias '{}'", alias));
    if (enrolling) r = registrar_.refuse(audit_action(op->op), context_of(request, alias), std::move(r));
    return to_problem(r);
  }
  if (request.spoofed_client_cert_header) {
    return to_problem(registrar_.refuse(
        audit_action(op->op), context_of(request, alias),
        refusal(Errc::invalid_input, ra::problem::kSpoofedHeader,
                "a client-certificate header came from a peer that is not a trusted proxy")));
  }
  switch (op->op) {
    case Op::cacerts: {
      auto chain = registrar_.cacerts(alias);
      if (!chain) return to_problem(chain.error());
      return certs_response(encode_certs_only(*chain, a->policy.base64_wrap));
    }
    case Op::csrattrs: {
      auto oids = registrar_.csr_attributes(alias);
      if (!oids) return to_problem(oids.error());
      if (oids->empty()) {
        http::Response r;
        r.status = 204;
        return r;
      }
      auto der = make_csr_attrs_der(*oids);
      if (!der) return to_problem(refusal(Errc::internal, ra::problem::kInternal, der.error().detail));
      http::Response r;
      r.status = 200;
      r.headers.set("Content-Type", "application/csrattrs");
      r.headers.set("Content-Transfer-Encoding", "base64");
      r.body = crypto::base64_encode(*der, a->policy.base64_wrap);
      return r;
    }
    case Op::fullcmc:
      return http::problem(501, problem::kFullCmc, "fullcmc is not implemented; use simpleenroll");
    default: return enroll(request, alias, op->name);
  }
}

http::Response EstService::enroll(const http::Request& request, std::string_view alias,
                                  std::string_view operation) const {
  const auto* op = find_op(operation);
  const auto action = audit_action(op->op);
  const auto* a = registrar_.find_alias(alias);
  const auto content_type = request.headers.get("Content-Type");
  if (!content_type || !has_media_type(*content_type, "application/pkcs10")) {
    auto r = registrar_.refuse(
        action, context_of(request, alias),
        refusal(Errc::invalid_input, problem::kMediaType,
                fmt::format("{} takes application/pkcs10 (got '{}')", operation, content_type.value_or(""))));
    // 415 is a status the registrar's vocabulary has no word for; an unavailable audit log still wins.
    if (r.code == Errc::unavailable) return to_problem(r);
    return http::problem(415, r.problem, r.reason);
  }
  auto der = decode_body(request.body);
  if (!der) {
    return to_problem(
        registrar_.refuse(action, context_of(request, alias),
                          refusal(Errc::invalid_input, problem::kBadBase64, der.error().detail)));
  }
  ra::EnrollRequest req;
  req.context = context_of(request, alias);
  req.csr_der = std::move(*der);
  req.basic_password = basic_password(request.headers);

  ra::Decision<ra::Enrollment> decision = op->op == Op::simplereenroll ? registrar_.simple_reenroll(req)
                                          : op->op == Op::serverkeygen ? registrar_.server_keygen(req)
                                                                       : registrar_.simple_enroll(req);
  if (!decision) return to_problem(decision.error());
  if (decision->status == ra::Enrollment::Status::pending) {
    http::Response r;
    r.status = 202;
    r.headers.set("Retry-After", std::to_string(decision->retry_after.count()));
    return r;
  }
  const bool wrap = a->policy.base64_wrap;
  if (op->op == Op::serverkeygen) {
    http::Response r;
    r.status = 200;
    r.headers.set("Content-Type", fmt::format("multipart/mixed; boundary={}", kServerKeygenBoundary));
    r.body = make_serverkeygen_body(*decision->private_key_pkcs8, decision->certificate, wrap);
    return r;
  }
  return certs_response(encode_certs_only({decision->certificate}, wrap));
}

}  // namespace hallmark::est

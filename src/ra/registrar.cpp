#include "hallmark/ra/registrar.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "hallmark/core/log.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/inventory/devices.hpp"
#include "hallmark/x509/csr.hpp"

namespace hallmark::ra {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

Refusal refusal(Errc code, std::string problem, std::string reason) {
  return Refusal{code, std::move(problem), std::move(reason), std::nullopt};
}

std::string describe_time(Seconds t) {
  return t == kNoExpiry ? "never" : to_iso8601(t);
}

std::string describe_duration(std::chrono::seconds s) {
  const auto n = s.count();
  if (n % 86400 == 0) return fmt::format("{}d", n / 86400);
  if (n % 3600 == 0) return fmt::format("{}h", n / 3600);
  return fmt::format("{}s", n);
}

bool contains(const std::vector<x509::Certificate>& list, const x509::Certificate& c) {
  return std::find(list.begin(), list.end(), c) != list.end();
}

// The peer's chain minus its leaf, plus what the alias offers for path building.
std::vector<x509::Certificate> untrusted_of(const Peer& peer, const std::vector<x509::Certificate>& extra) {
  std::vector<x509::Certificate> out;
  if (peer.chain.size() > 1) out.assign(peer.chain.begin() + 1, peer.chain.end());
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

// `leaf` verifies to one of `trust`'s roots through one of `cas`, or was issued directly by one of
// `partial` (CAs recorded without their root), at instant `at`.
Status verify_through(const x509::Certificate& leaf, const std::vector<x509::Certificate>& untrusted,
                      const x509::TrustStore& trust, const std::vector<x509::Certificate>& cas,
                      const std::vector<x509::Certificate>& partial, Seconds at) {
  std::string why = "no trust anchor configured";
  if (!trust.empty()) {
    auto path = trust.verify(leaf, untrusted, at);
    if (path) {
      for (std::size_t i = 1; i < path->size(); ++i) {
        if (contains(cas, (*path)[i])) return {};
      }
      why = fmt::format("its path ({} under {}) passes through none of the configured CAs",
                        leaf.issuer().to_string(), path->back().subject().to_string());
    } else {
      why = path.error().detail;
    }
  }
  for (const auto& ca : partial) {
    if (!(leaf.issuer() == ca.subject())) continue;
    if (!leaf.verify_signature(ca.public_key())) continue;
    if (at < leaf.not_before() || at > leaf.not_after()) {
      why = fmt::format("certificate is outside its validity ({} to {})", to_iso8601(leaf.not_before()),
                        describe_time(leaf.not_after()));
      continue;
    }
    if (at < ca.not_before() || at > ca.not_after()) {
      why = fmt::format("issuing CA {} is outside its validity", ca.subject().to_string());
      continue;
    }
    return {};
  }
  return fail(Errc::unauthenticated, why);
}

// The TLS layer verified the peer's path in the handshake, under the union of every alias's anchors.
// When that path passes through one of this alias's CAs (directly above the leaf for a CA recorded
// without its root), verify_through would accept it: the signatures below the CA were checked by the
// handshake, the CA's own path at start-up (make_alias). What is left is the validity at `at` (the
// registrar's clock, not the handshake's instant). False means "not shown": verify_through decides.
bool verified_by_tls(const Peer& peer, const std::vector<VerifiedCa>& cas, Seconds at) {
  if (!peer.verified || peer.expired || peer.via_proxy) return false;
  const auto& chain = peer.chain;
  for (std::size_t i = 1; i < chain.size(); ++i) {
    for (const auto& ca : cas) {
      if ((ca.partial && i != 1) || at < ca.valid_from || at > ca.valid_until || !(chain[i] == ca.ca))
        continue;
      for (std::size_t j = 0; j < i; ++j) {
        if (at < chain[j].not_before() || at > chain[j].not_after()) return false;
      }
      return true;
    }
  }
  return false;
}

// Extensions of a CA that constrain the names or policies of everything below it: a client path
// through such a CA is always verified in full.
constexpr std::string_view kConstraintOids[] = {"2.5.29.30", "2.5.29.33", "2.5.29.36", "2.5.29.54"};

// The CAs of `chains` whose own path verifies under `trust` (or that are partial anchors), with the
// window in which that whole path is valid.
std::vector<VerifiedCa> verified_cas(const std::vector<std::vector<x509::Certificate>>& chains,
                                     const x509::TrustStore& trust) {
  std::vector<VerifiedCa> out;
  for (const auto& chain : chains) {
    if (chain.empty()) continue;
    VerifiedCa v;
    v.ca = chain.front();
    v.partial = !chain.back().is_self_issued();
    v.valid_from = Seconds::min();
    v.valid_until = Seconds::max();
    bool constrained = false;
    for (const auto& c : v.partial ? std::vector<x509::Certificate>{chain.front()} : chain) {
      v.valid_from = std::max(v.valid_from, c.not_before());
      v.valid_until = std::min(v.valid_until, c.not_after());
      for (const auto oid : kConstraintOids) constrained = constrained || c.has_extension(oid);
    }
    if (constrained || v.valid_from > v.valid_until) continue;
    if (!v.partial) {
      // Signatures and structure, judged at an instant where every validity holds.
      const std::vector<x509::Certificate> above(chain.begin() + 1, chain.end());
      if (!trust.verify(v.ca, above, v.valid_from)) continue;
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<std::string> san_strings(const std::optional<x509::SubjectAltName>& san) {
  std::vector<std::string> out;
  if (san) {
    for (const auto& n : san->names) out.push_back(n.to_string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct ChallengeView {
  std::optional<Secret> password;  // the CSR's challengePassword
  bool is_pop = false;             // it equals the base64 of the channel binding
};

}  // namespace

// ---- alias construction ----

Result<Alias> make_alias(AliasPolicy policy, std::shared_ptr<const ca::Issuer> issuer, ca::Profile profile,
                         std::vector<x509::Certificate> ca_chain,
                         const std::vector<std::vector<x509::Certificate>>& enroll_chains,
                         const std::vector<std::vector<x509::Certificate>>& reenroll_chains) {
  HM_TRY_VOID(policy.validate());
  const std::string where = fmt::format("[est.alias.{}]", policy.name);
  if (!issuer) return fail(Errc::invalid_input, where + " no issuing CA");
  if (profile.kind != ca::ProfileKind::end_entity) {
    return fail(Errc::invalid_input,
                fmt::format("{} profile {} is a {} profile; an alias issues end-entity certificates", where,
                            profile.name, ca::to_string(profile.kind)));
  }
  if (ca_chain.empty() || !(ca_chain.front() == issuer->certificate())) {
    return fail(Errc::invalid_input, where + " the CA chain must start with the issuing CA");
  }
  if (enroll_chains.size() != policy.enroll_anchors.size() ||
      reenroll_chains.size() != (policy.reenroll_cas.empty() ? 1 : policy.reenroll_cas.size())) {
    return fail(Errc::invalid_input, where + " one certificate chain per enroll anchor and re-enroll CA");
  }
  // The alias decides the lifetime: "forever" unless it says otherwise.
  profile.lifetime = policy.lifetime;

  Alias a;
  const auto add_chains = [&a](const std::vector<std::vector<x509::Certificate>>& chains,
                               std::vector<x509::Certificate>& cas, x509::TrustStore& trust,
                               std::vector<x509::Certificate>& partial, std::string_view what) -> Status {
    for (const auto& chain : chains) {
      if (chain.empty()) return fail(Errc::invalid_input, fmt::format("empty {} chain", what));
      cas.push_back(chain.front());
      if (chain.back().is_self_issued()) {
        if (!contains(trust.anchors(), chain.back())) trust.add_anchor(chain.back());
      } else {
        partial.push_back(chain.front());
      }
      for (std::size_t i = 0; i + 1 < chain.size(); ++i) {
        if (!contains(a.intermediates, chain[i])) a.intermediates.push_back(chain[i]);
      }
    }
    return {};
  };
  HM_TRY_VOID(add_chains(enroll_chains, a.enroll_cas, a.enroll_trust, a.enroll_partial, "enroll anchor"));
  HM_TRY_VOID(
      add_chains(reenroll_chains, a.reenroll_cas, a.reenroll_trust, a.reenroll_partial, "re-enroll CA"));
  a.enroll_verified = verified_cas(enroll_chains, a.enroll_trust);
  a.reenroll_verified = verified_cas(reenroll_chains, a.reenroll_trust);
  if (policy.reenroll_cas.empty()) policy.reenroll_cas.push_back(policy.ca);
  a.policy = std::move(policy);
  a.issuer = std::move(issuer);
  a.profile = std::move(profile);
  a.ca_chain = std::move(ca_chain);
  return a;
}

// ---- the registrar ----

struct Registrar::Attempt {
  const Alias* alias = nullptr;
  std::string action;  // "enroll", "reenroll", "serverkeygen"
  std::string object;  // the end entity when known, else "bc:<fingerprint>", "idc:<serial>", "peer:<addr>"
  const RequestContext* context = nullptr;
};

Registrar::Registrar(store::Store& store, const Clock& clock, std::vector<Alias> aliases,
                     RegistrarOptions options)
    : store_(store), clock_(clock), options_(std::move(options)) {
  for (auto& a : aliases) {
    auto name = a.policy.name;
    aliases_.emplace(std::move(name), std::move(a));
  }
}

const Alias* Registrar::find_alias(std::string_view name) const {
  const std::string_view key = name.empty() ? std::string_view(options_.default_alias) : name;
  if (key.empty()) return nullptr;
  const auto it = aliases_.find(key);
  return it == aliases_.end() ? nullptr : &it->second;
}

std::vector<std::string> Registrar::alias_names() const {
  std::vector<std::string> out;
  for (const auto& [name, alias] : aliases_) out.push_back(name);
  return out;
}

Decision<std::vector<x509::Certificate>> Registrar::cacerts(std::string_view alias) const {
  const auto* a = find_alias(alias);
  if (a == nullptr) {
    return std::unexpected(
        refusal(Errc::not_found, problem::kUnknownAlias, fmt::format("no EST alias '{}'", alias)));
  }
  return a->ca_chain;
}

Decision<std::vector<std::string>> Registrar::csr_attributes(std::string_view alias) const {
  const auto* a = find_alias(alias);
  if (a == nullptr) {
    return std::unexpected(
        refusal(Errc::not_found, problem::kUnknownAlias, fmt::format("no EST alias '{}'", alias)));
  }
  const auto& p = a->policy;
  std::vector<std::string> oids;
  const auto add = [&oids](const std::string& oid) {
    if (std::find(oids.begin(), oids.end(), oid) == oids.end()) oids.push_back(oid);
  };
  if (p.allows(Authenticator::bc)) add(*attribute_oid(p.ukid_field));
  if (p.secret_field) add(*attribute_oid(*p.secret_field));
  if (p.pop_linking == PopLinking::required || p.allows(Authenticator::bc_secret)) add(kOidChallengePassword);
  return oids;
}

Refusal Registrar::refuse(std::string_view action, const RequestContext& context, Refusal r) {
  Attempt a;
  a.alias = find_alias(context.alias);
  a.action = std::string(action);
  a.context = &context;
  if (const auto* leaf = context.peer.leaf()) {
    a.object = "cert:" + leaf->fingerprint_sha256_hex();
  } else {
    a.object = "peer:" + context.peer.remote_address;
  }
  return audited(a, std::move(r));
}

Refusal Registrar::audited(Attempt& a, Refusal r) {
  store::AuditEvent ev;
  ev.time = clock_.now();
  ev.actor = options_.actor;
  ev.action = a.action;
  ev.object = a.object;
  ev.outcome = store::Outcome::refused;
  const std::string alias = a.alias != nullptr ? a.alias->policy.name : a.context->alias;
  ev.reason = fmt::format("{}: {} (alias {})", r.problem, r.reason, alias.empty() ? "-" : alias);
  ev.request_id = a.context->request_id;
  if (auto appended = store_.append_audit(ev); !appended) {
    log::error("ra_audit_failed",
               {{"request_id", ev.request_id}, {"problem", r.problem}, {"error", appended.error().detail}});
    if (appended.error().code == Errc::unavailable && r.code != Errc::unavailable) {
      // A decision that cannot be audited is not made: the client retries later.
      return Refusal{Errc::unavailable, problem::kStoreUnavailable, "the audit log is unavailable",
                     options_.unavailable_retry_after};
    }
  }
  log::debug("ra_decision", {{"request_id", ev.request_id},
                             {"action", ev.action},
                             {"object", ev.object},
                             {"outcome", "refused"},
                             {"problem", r.problem}});
  return r;
}

Refusal Registrar::store_error(Attempt& a, const Error& error, std::string_view what) {
  if (error.code == Errc::unavailable) {
    return audited(a, Refusal{Errc::unavailable, problem::kStoreUnavailable,
                              fmt::format("{}: {}", what, error.detail), options_.unavailable_retry_after});
  }
  return audited(a, refusal(Errc::internal, problem::kInternal, fmt::format("{}: {}", what, error.detail)));
}

std::map<std::string, std::string> Registrar::variables_for(const Alias& alias,
                                                            const store::DeviceRecord& device,
                                                            const store::EndEntityRecord& ee) const {
  std::map<std::string, std::string> vars = alias.policy.variables;
  for (const auto& [k, v] : options_.variables) vars.emplace(k, v);
  std::string serial;
  const auto subject = nlohmann::json::parse(ee.subject_json, nullptr, false);
  if (subject.is_object() && subject.contains("serialNumber") && subject["serialNumber"].is_string()) {
    serial = subject["serialNumber"].get<std::string>();
  }
  switch (alias.policy.subject_serial) {
    case SerialSource::automatic:
      if (serial.empty()) serial = device.ukid.value_or(device.vendor_unique_id);
      break;
    case SerialSource::ukid:
      if (auto u = inventory::ukid_of_bc(device.bc_der); u && !device.ukid_secret_digest) {
        serial = *u;
      } else {
        serial.clear();  // Option 3 has no public UKID: the profile's required {serial} fails loudly
      }
      break;
    case SerialSource::unique_id: serial = device.vendor_unique_id; break;
  }
  vars["serial"] = serial;
  vars["hw_serial"] = device.vendor_unique_id;
  return vars;
}

// ---- enrollment ----

Decision<Enrollment> Registrar::simple_enroll(const EnrollRequest& request) {
  return enroll(request, Mode::enroll);
}

Decision<Enrollment> Registrar::server_keygen(const EnrollRequest& request) {
  return enroll(request, Mode::keygen);
}

Decision<Enrollment> Registrar::enroll(const EnrollRequest& request, Mode mode) {
  Attempt a;
  a.action = mode == Mode::keygen ? "serverkeygen" : "enroll";
  a.context = &request.context;
  a.object = "peer:" + request.context.peer.remote_address;
  a.alias = find_alias(request.context.alias);
  if (a.alias == nullptr) {
    return std::unexpected(audited(a, refusal(Errc::not_found, problem::kUnknownAlias,
                                              fmt::format("no EST alias '{}'", request.context.alias))));
  }
  if (mode == Mode::keygen && !a.alias->policy.serverkeygen) {
    return std::unexpected(audited(a, refusal(Errc::not_found, problem::kServerKeygenDisabled,
                                              "server key generation is off for this alias")));
  }
  return enroll_checked(a, request, mode);
}

namespace {

// Parses the CSR and checks its self-signature (the proof of possession of its key).
Decision<x509::Csr> parse_csr(ByteView der) {
  auto csr = x509::Csr::parse_der(der);
  if (!csr) return std::unexpected(refusal(Errc::invalid_input, problem::kBadCsr, csr.error().detail));
  if (auto ok = csr->verify_self_signature(); !ok) {
    return std::unexpected(
        refusal(Errc::invalid_input, problem::kCsrSignature, "CSR signature does not verify"));
  }
  return std::move(*csr);
}

std::optional<std::string> binding_base64(const Peer& peer) {
  if (peer.via_proxy || peer.channel_binding_type.empty() || peer.channel_binding.empty())
    return std::nullopt;
  return crypto::base64_encode(peer.channel_binding);
}

// POP linking (RFC 7030 §3.5). `password_is_secret`: the challengePassword was taken as the Option 3
// secret, so it is not a linking attempt.
std::optional<Refusal> check_pop(const AliasPolicy& policy, const Peer& peer, const ChallengeView& cp,
                                 bool password_is_secret) {
  if (policy.pop_linking == PopLinking::off) return std::nullopt;
  const auto binding = binding_base64(peer);
  if (policy.pop_linking == PopLinking::required) {
    if (!binding) {
      return refusal(Errc::forbidden, problem::kPopUnavailable,
                     peer.via_proxy
                         ? "POP linking is required but the request came through a terminating proxy"
                         : "POP linking is required but the connection has no channel binding");
    }
    if (!cp.password || password_is_secret) {
      return refusal(Errc::forbidden, problem::kPopMissing,
                     fmt::format("POP linking is required: put the base64 {} value in challengePassword",
                                 peer.channel_binding_type));
    }
    if (!cp.is_pop) {
      return refusal(
          Errc::forbidden, problem::kPopMismatch,
          fmt::format("challengePassword does not match this connection's {}", peer.channel_binding_type));
    }
    return std::nullopt;
  }
  // optional: a challengePassword that is not the secret must be the binding when there is one.
  if (binding && cp.password && !password_is_secret && !cp.is_pop) {
    return refusal(
        Errc::forbidden, problem::kPopMismatch,
        fmt::format("challengePassword does not match this connection's {}", peer.channel_binding_type));
  }
  return std::nullopt;
}

ChallengeView challenge_of(const x509::Csr& csr, const Peer& peer) {
  ChallengeView v;
  v.password = csr.challenge_password();
  if (v.password) {
    if (const auto b = binding_base64(peer)) v.is_pop = v.password->equals(*b);
  }
  return v;
}

}  // namespace

namespace {

// The unique id a BC names: CN "sn<id>" (the Microchip and hallmark BC shape), else serialNumber.
std::optional<std::string> named_unique_id(const x509::Certificate& bc) {
  const x509::Name subject = bc.subject();
  std::optional<std::string> id;
  if (auto cn = subject.get("CN"); cn && cn->size() > 2 && cn->starts_with("sn")) {
    id = cn->substr(2);
  } else {
    id = subject.get("serialNumber");
  }
  if (!id || id->empty()) return std::nullopt;
  return lower(*id);
}

}  // namespace

Decision<std::optional<store::DeviceRecord>> Registrar::pin_lite_device(Attempt& a,
                                                                        const x509::Certificate& bc,
                                                                        const std::string& fingerprint) {
  const auto unique_id = named_unique_id(bc);
  if (!unique_id) return std::nullopt;
  auto device = store_.find_device_by_unique_id(*unique_id);
  if (!device) {
    if (device.error().code == Errc::not_found) return std::nullopt;
    return std::unexpected(store_error(a, device.error(), "device lookup"));
  }
  if (!device->bc_der.empty()) {
    return std::unexpected(audited(
        a, refusal(Errc::forbidden, problem::kUnknownDevice,
                   fmt::format("birth certificate is not in the inventory: device {} is known with another "
                               "key (BC sha256 {})",
                               device->vendor_unique_id, device->bc_sha256))));
  }
  // The factory line decides when a device may speak: a key is pinned only to a mounted device.
  if (device->state != store::DeviceState::mounted) {
    const bool retired = device->state == store::DeviceState::retired;
    return std::unexpected(
        audited(a, refusal(Errc::forbidden, retired ? problem::kDeviceRetired : problem::kDeviceNotMounted,
                           fmt::format("device {} is {}, not mounted", device->vendor_unique_id,
                                       store::to_string(device->state)))));
  }
  store::DeviceRecord pinned = *device;
  pinned.bc_der = bc.to_der();
  pinned.bc_sha256 = fingerprint;
  pinned.ukid = crypto::sha256_hex(bc.spki_der());
  pinned.bc_issuer = bc.issuer().to_string();
  auto ee = inventory::make_end_entity(pinned, a.alias->policy.name);
  if (!ee)
    return std::unexpected(audited(a, refusal(Errc::forbidden, problem::kNoEndEntity, ee.error().detail)));
  const store::AuditEvent ev{clock_.now(),
                             options_.actor,
                             "pin-key",
                             device->vendor_unique_id,
                             store::Outcome::accepted,
                             fmt::format("Lite device's first contact on alias {}: bc_sha256={} ukid={}",
                                         a.alias->policy.name, fingerprint, *pinned.ukid),
                             a.context->request_id};
  if (auto done =
          store_.pin_device_key(device->vendor_unique_id, pinned.bc_der, fingerprint, pinned.ukid, ev, *ee);
      !done) {
    // A concurrent first contact with the same BC pinned it first: use that.
    if (auto again = store_.find_device_by_bc_fingerprint(fingerprint))
      return std::optional(std::move(*again));
    if (done.error().code == Errc::conflict) {
      return std::unexpected(
          audited(a, refusal(Errc::forbidden, problem::kUnknownDevice, done.error().detail)));
    }
    return std::unexpected(store_error(a, done.error(), "pinning the key"));
  }
  log::info("lite_key_pinned", {{"request_id", a.context->request_id},
                                {"device", device->vendor_unique_id},
                                {"bc_sha256", fingerprint}});
  auto found = store_.find_device_by_bc_fingerprint(fingerprint);
  if (!found) return std::unexpected(store_error(a, found.error(), "device lookup"));
  return std::optional(std::move(*found));
}

Decision<Enrollment> Registrar::enroll_checked(Attempt& a, const EnrollRequest& request, Mode mode) {
  const Alias& alias = *a.alias;
  const auto& policy = alias.policy;
  const Peer& peer = request.context.peer;
  const auto* bc = peer.leaf();
  if (bc == nullptr) {
    return std::unexpected(
        audited(a, refusal(Errc::unauthenticated, problem::kClientCertRequired,
                           "enrollment needs a birth certificate as TLS client certificate")));
  }
  const std::string fingerprint = bc->fingerprint_sha256_hex();
  a.object = "bc:" + fingerprint;

  auto csr = parse_csr(request.csr_der);
  if (!csr) return std::unexpected(audited(a, std::move(csr.error())));

  const Seconds now = clock_.now();
  if (auto ok = verified_by_tls(peer, alias.enroll_verified, now)
                    ? Status{}
                    : verify_through(*bc, untrusted_of(peer, alias.intermediates), alias.enroll_trust,
                                     alias.enroll_cas, alias.enroll_partial, now);
      !ok) {
    return std::unexpected(audited(
        a, refusal(Errc::forbidden, problem::kUntrustedClientCert,
                   fmt::format("client certificate {} is not a birth certificate of this alias's anchors "
                               "({}): {}",
                               bc->subject().to_string(), fmt::join(policy.enroll_anchors, ", "),
                               ok.error().detail))));
  }

  auto device = store_.find_device_by_bc_fingerprint(fingerprint);
  if (!device && device.error().code == Errc::not_found && policy.pin_lite_devices) {
    auto lite = pin_lite_device(a, *bc, fingerprint);
    if (!lite) return std::unexpected(std::move(lite.error()));
    if (*lite) device = std::move(**lite);
  }
  if (!device) {
    if (device.error().code == Errc::not_found) {
      return std::unexpected(audited(
          a, refusal(Errc::forbidden, problem::kUnknownDevice, "birth certificate is not in the inventory")));
    }
    return std::unexpected(store_error(a, device.error(), "device lookup"));
  }
  const auto option = inventory::device_option(*device);
  const bool option3 = option == inventory::DeviceOption::option3;
  if (!policy.allows(option3 ? Authenticator::bc_secret : Authenticator::bc)) {
    return std::unexpected(audited(
        a, refusal(Errc::forbidden, problem::kAuthenticatorNotAllowed,
                   fmt::format("device {} is an {} device; this alias does not take the {} authenticator",
                               device->vendor_unique_id, inventory::to_string(option),
                               option3 ? "bc-secret" : "bc"))));
  }
  auto ee_template = inventory::make_end_entity(*device, policy.name, bc);
  if (!ee_template) {
    return std::unexpected(
        audited(a, refusal(Errc::forbidden, problem::kNoEndEntity, ee_template.error().detail)));
  }
  const std::string& username = ee_template->username;
  a.object = username;

  switch (device->state) {
    case store::DeviceState::received:
      return std::unexpected(
          audited(a, refusal(Errc::forbidden, problem::kDeviceNotMounted,
                             fmt::format("device {} is received, not mounted", device->vendor_unique_id))));
    case store::DeviceState::retired:
      return std::unexpected(
          audited(a, refusal(Errc::forbidden, problem::kDeviceRetired,
                             fmt::format("device {} is retired", device->vendor_unique_id))));
    case store::DeviceState::mounted:
    case store::DeviceState::enrolled: break;
  }

  // Authentication of the identity claim: the UKID (Option 2) or the secret (Option 3).
  const auto cp = challenge_of(*csr, peer);
  bool password_is_secret = false;
  if (!option3) {
    const auto claimed = csr->subject().get(policy.ukid_field);
    if (!claimed || claimed->empty()) {
      return std::unexpected(
          audited(a, refusal(Errc::forbidden, problem::kUkidMissing,
                             fmt::format("CSR subject has no {} carrying the UKID", policy.ukid_field))));
    }
    const std::string ukid = bc->public_key().sha256_hex();
    const std::string claim = lower(*claimed);
    if (claim != ukid) {
      std::string reason = "the UKID in the CSR is not the SHA-256 of the birth certificate's key";
      if (auto other = store_.find_device_by_ukid(claim); other && other->id != device->id) {
        reason = fmt::format("the UKID in the CSR names another device ({})", other->vendor_unique_id);
      }
      return std::unexpected(audited(a, refusal(Errc::forbidden, problem::kUkidMismatch, reason)));
    }
  } else {
    // Which secret: HTTP Basic, else the configured subject field, else a challengePassword that is
    // not a POP-linking value.
    std::optional<Secret> secret;
    std::string source;
    if (request.basic_password) {
      secret = request.basic_password;
      source = "HTTP Basic password";
    } else if (policy.secret_field) {
      if (auto v = csr->subject().get(*policy.secret_field)) {
        secret = Secret(std::move(*v));
        source = "CSR " + *policy.secret_field;
      }
    }
    if (!secret && cp.password && !cp.is_pop) {
      secret = cp.password;
      source = "challengePassword";
      password_is_secret = true;
    }
    if (!secret || secret->empty()) {
      return std::unexpected(audited(
          a,
          refusal(Errc::unauthenticated, problem::kSecretMissing,
                  "Option 3 device: prove the UKID secret in challengePassword or an HTTP Basic password")));
    }
    const auto expected = parse_hex(device->ukid_secret_digest.value_or(""));
    const auto actual = crypto::sha256(as_bytes(secret->reveal()));
    if (!expected || !crypto::equal_constant_time(*expected, actual)) {
      return std::unexpected(audited(a, refusal(Errc::unauthenticated, problem::kSecretMismatch,
                                                fmt::format("the UKID secret ({}) is wrong", source))));
    }
  }
  if (auto pop = check_pop(policy, peer, cp, password_is_secret))
    return std::unexpected(audited(a, std::move(*pop)));

  std::optional<crypto::PrivateKey> generated;
  crypto::PublicKey key;
  if (mode == Mode::keygen) {
    auto k = crypto::PrivateKey::generate(policy.serverkeygen_key_type);
    if (!k) return std::unexpected(audited(a, refusal(Errc::internal, problem::kInternal, k.error().detail)));
    generated = std::move(*k);
    key = generated->public_key();
  } else {
    key = csr->public_key();
    if (auto ok = ca::check_key_policy(alias.profile, key.info()); !ok) {
      return std::unexpected(
          audited(a, refusal(Errc::forbidden, problem::kKeyNotAllowed, ok.error().detail)));
    }
  }

  auto ee = store_.find_end_entity(username);
  if (!ee) {
    if (ee.error().code == Errc::not_found) {
      return std::unexpected(
          audited(a, refusal(Errc::forbidden, problem::kNoEndEntity,
                             fmt::format("device {} has no end entity", device->vendor_unique_id))));
    }
    return std::unexpected(store_error(a, ee.error(), "end entity lookup"));
  }
  if (!ee->est_alias.empty() && ee->est_alias != policy.name) {
    return std::unexpected(audited(a, refusal(Errc::forbidden, problem::kAliasMismatch,
                                              fmt::format("the end entity belongs to alias '{}', not '{}'",
                                                          ee->est_alias, policy.name))));
  }
  if (ee->state == store::EndEntityState::pending) {
    audited(a, refusal(Errc::unavailable, problem::kPending, "the end entity awaits approval"));
    Enrollment e;
    e.status = Enrollment::Status::pending;
    e.retry_after = options_.pending_retry_after;
    return e;
  }
  if (ee->state == store::EndEntityState::revoked) {
    return std::unexpected(
        audited(a, refusal(Errc::forbidden, problem::kEndEntityState, "the end entity is revoked")));
  }

  const bool issued_before =
      ee->state == store::EndEntityState::generated || device->state == store::DeviceState::enrolled;
  const std::string key_sha = key.sha256_hex();
  if (issued_before && mode == Mode::enroll) {
    // Idempotent retry: the same device with the same key gets the same IDC again.
    if (auto prior = store_.find_certificate_by_device_and_key(device->id, key_sha)) {
      return replay(a, *device, *prior);
    } else if (prior.error().code != Errc::not_found) {
      return std::unexpected(store_error(a, prior.error(), "certificate lookup"));
    }
  }
  if (device->bc_revoked) {
    return std::unexpected(
        audited(a, refusal(Errc::forbidden, problem::kBcRevoked, "the birth certificate is revoked")));
  }
  if (device->bc_consumed) {
    return std::unexpected(audited(a, refusal(Errc::forbidden, problem::kBcConsumed,
                                              "the birth certificate was used up by an enrollment")));
  }

  auto kind = store::IssuanceKind::enroll;
  if (ee->state == store::EndEntityState::generated) {
    // A new key for an enrolled device: recovery after expiry, or a re-issue the alias allows.
    store::CertificateFilter filter;
    filter.device_id = device->id;
    filter.status = store::CertificateStatus::good;
    auto certs = store_.list_certificates(filter);
    if (!certs) return std::unexpected(store_error(a, certs.error(), "certificate lookup"));
    const store::CertificateRecord* newest = nullptr;
    bool usable = false;
    for (const auto& c : *certs) {
      if (newest == nullptr || c.id > newest->id) newest = &c;
      if (now <= c.not_after + policy.grace_period) usable = true;
    }
    const bool recovery = policy.recovery_through_bc && !usable;
    if (!recovery && !policy.allow_reissue) {
      return std::unexpected(audited(
          a, refusal(Errc::conflict, problem::kAlreadyEnrolled,
                     newest != nullptr
                         ? fmt::format("the device already holds IDC {} for another key; re-enroll with it",
                                       newest->serial_hex)
                         : std::string("the device was enrolled before with another key"))));
    }
    kind = store::IssuanceKind::reenroll;
  }
  std::optional<Secret> key_out;
  if (generated) {
    auto der = generated->to_der();
    if (!der)
      return std::unexpected(audited(a, refusal(Errc::internal, problem::kInternal, der.error().detail)));
    key_out = std::move(*der);
  }
  std::optional<x509::Csr> issued_csr;
  if (mode == Mode::enroll) issued_csr = std::move(*csr);
  return issue(a, kind, *device, *ee, key, issued_csr, std::move(key_out));
}

Decision<Enrollment> Registrar::replay(Attempt& a, const store::DeviceRecord& device,
                                       const store::CertificateRecord& record) {
  auto cert = x509::Certificate::parse_der(record.der);
  if (!cert)
    return std::unexpected(audited(a, refusal(Errc::internal, problem::kInternal, cert.error().detail)));
  store::AuditEvent ev{clock_.now(),
                       options_.actor,
                       a.action,
                       a.object,
                       store::Outcome::accepted,
                       fmt::format("retry: returned serial={} issued before (alias {})", record.serial_hex,
                                   a.alias->policy.name),
                       a.context->request_id};
  if (auto appended = store_.append_audit(ev); !appended) {
    if (appended.error().code == Errc::unavailable) {
      return std::unexpected(Refusal{Errc::unavailable, problem::kStoreUnavailable,
                                     "the audit log is unavailable", options_.unavailable_retry_after});
    }
    log::error("ra_audit_failed", {{"request_id", ev.request_id}, {"error", appended.error().detail}});
  }
  // An issuance recorded without the flag (the alias's after_issue set since) gets it now.
  apply_after_issue(a, device);
  Enrollment e;
  e.certificate = std::move(*cert);
  e.replayed = true;
  return e;
}

Decision<Enrollment> Registrar::issue(Attempt& a, store::IssuanceKind kind, const store::DeviceRecord& device,
                                      const store::EndEntityRecord& ee, const crypto::PublicKey& key,
                                      const std::optional<x509::Csr>& csr,
                                      std::optional<Secret> private_key) {
  const Alias& alias = *a.alias;
  ca::IssueRequest req;
  // The CSR's signature was checked already; the issuer needs the CSR itself only to copy its SAN.
  if (csr && alias.profile.allow_csr_san) {
    req.key_source = *csr;
  } else {
    req.key_source = key;
  }
  req.variables = variables_for(alias, device, ee);
  auto cert = alias.issuer->issue(req, alias.profile);
  if (!cert) {
    const auto& e = cert.error();
    if (e.code == Errc::forbidden) {
      return std::unexpected(audited(a, refusal(Errc::forbidden, problem::kKeyNotAllowed, e.detail)));
    }
    // Anything else (a profile variable missing, an expired CA) is the server's configuration.
    return std::unexpected(audited(a, refusal(Errc::internal, problem::kIssuanceFailed, e.detail)));
  }

  store::IssuanceRequest ir;
  ir.kind = kind;
  ir.username = ee.username;
  auto& c = ir.certificate;
  c.serial_hex = cert->serial_hex();
  c.issuer_ca = alias.policy.ca;
  c.subject = cert->subject().to_string();
  c.not_before = cert->not_before();
  c.not_after = cert->not_after();
  c.public_key_sha256 = key.sha256_hex();
  c.der = cert->to_der();
  ir.audit = store::AuditEvent{
      clock_.now(),
      options_.actor,
      a.action,
      ee.username,
      store::Outcome::accepted,
      fmt::format(
          "serial={} ca={} profile={} alias={}{}", c.serial_hex, alias.policy.ca, alias.profile.name,
          alias.policy.name,
          kind == store::IssuanceKind::reenroll && a.action != "reenroll" ? " (re-issue for a new key)" : ""),
      a.context->request_id};
  // The alias's after_issue flag on the BC is set in the same transaction as the issuance.
  const auto after = after_issue_mark(a, device);
  if (after != store::BcMark::none) {
    ir.mark_bc = after;
    ir.bc_audit = after_issue_event(a, device);
  }
  // The commit happens before anyone sees the certificate: a crash after it leaves a record a
  // retry finds; a crash before it leaves nothing.
  auto recorded = store_.record_issuance(ir);
  if (!recorded) {
    const auto& e = recorded.error();
    // The store audited this refusal itself.
    log::warn("ra_issuance_refused", {{"request_id", a.context->request_id},
                                      {"username", ee.username},
                                      {"code", std::string(to_string(e.code))},
                                      {"error", e.detail}});
    if (e.code == Errc::conflict && !private_key) {
      // A concurrent request for the same device and key may have won the race: hand out its IDC.
      if (auto prior = store_.find_certificate_by_device_and_key(device.id, c.public_key_sha256)) {
        return replay(a, device, *prior);
      }
    }
    switch (e.code) {
      case Errc::conflict:
        return std::unexpected(refusal(Errc::conflict, problem::kEndEntityState, e.detail));
      case Errc::not_found: return std::unexpected(refusal(Errc::forbidden, problem::kNoEndEntity, e.detail));
      case Errc::unavailable:
        return std::unexpected(Refusal{Errc::unavailable, problem::kStoreUnavailable, e.detail,
                                       options_.unavailable_retry_after});
      default: return std::unexpected(refusal(Errc::internal, problem::kInternal, e.detail));
    }
  }
  log::debug("ra_decision", {{"request_id", a.context->request_id},
                             {"action", a.action},
                             {"object", ee.username},
                             {"outcome", "accepted"},
                             {"serial", c.serial_hex}});
  if (after == store::BcMark::revoked && options_.on_bc_revoked)
    options_.on_bc_revoked(device, a.context->request_id);
  Enrollment out;
  out.certificate = std::move(*cert);
  out.private_key_pkcs8 = std::move(private_key);
  return out;
}

store::BcMark Registrar::after_issue_mark(const Attempt& a, const store::DeviceRecord& device) const {
  if (a.action == "reenroll") return store::BcMark::none;
  switch (a.alias->policy.after_issue) {
    case AfterIssue::revoke_bc: return device.bc_revoked ? store::BcMark::none : store::BcMark::revoked;
    case AfterIssue::consume_bc: return device.bc_consumed ? store::BcMark::none : store::BcMark::consumed;
    case AfterIssue::none: break;
  }
  return store::BcMark::none;
}

store::AuditEvent Registrar::after_issue_event(const Attempt& a, const store::DeviceRecord& device) const {
  return store::AuditEvent{clock_.now(),
                           options_.actor,
                           a.alias->policy.after_issue == AfterIssue::revoke_bc ? "bc-revoke" : "bc-consume",
                           device.vendor_unique_id,
                           store::Outcome::accepted,
                           fmt::format("after issuance on alias {}", a.alias->policy.name),
                           a.context->request_id};
}

void Registrar::apply_after_issue(Attempt& a, const store::DeviceRecord& device) {
  const auto after = after_issue_mark(a, device);
  if (after == store::BcMark::none) return;
  const auto ev = after_issue_event(a, device);
  const auto done = after == store::BcMark::revoked ? store_.mark_bc_revoked(device.id, ev)
                                                    : store_.mark_bc_consumed(device.id, ev);
  if (!done) {
    // The IDC is committed; the flag is set again by the device's next retry.
    log::error("ra_after_issue_failed", {{"request_id", a.context->request_id},
                                         {"device", device.vendor_unique_id},
                                         {"error", done.error().detail}});
    return;
  }
  if (after == store::BcMark::revoked && options_.on_bc_revoked)
    options_.on_bc_revoked(device, a.context->request_id);
}

// ---- re-enrollment ----

Decision<Enrollment> Registrar::simple_reenroll(const EnrollRequest& request) {
  Attempt a;
  a.action = "reenroll";
  a.context = &request.context;
  a.object = "peer:" + request.context.peer.remote_address;
  a.alias = find_alias(request.context.alias);
  if (a.alias == nullptr) {
    return std::unexpected(audited(a, refusal(Errc::not_found, problem::kUnknownAlias,
                                              fmt::format("no EST alias '{}'", request.context.alias))));
  }
  return reenroll_checked(a, request);
}

Decision<Enrollment> Registrar::reenroll_checked(Attempt& a, const EnrollRequest& request) {
  const Alias& alias = *a.alias;
  const auto& policy = alias.policy;
  const Peer& peer = request.context.peer;
  const auto* idc = peer.leaf();
  if (idc == nullptr) {
    return std::unexpected(
        audited(a, refusal(Errc::unauthenticated, problem::kClientCertRequired,
                           "re-enrollment needs the current IDC as TLS client certificate")));
  }
  a.object = "idc:" + idc->serial_hex();
  auto csr = parse_csr(request.csr_der);
  if (!csr) return std::unexpected(audited(a, std::move(csr.error())));

  // An expired IDC is judged at its last valid instant while the grace period lasts.
  const Seconds now = clock_.now();
  Seconds at = now;
  if (now > idc->not_after()) {
    if (now > idc->not_after() + policy.grace_period) {
      return std::unexpected(audited(
          a, refusal(Errc::forbidden, problem::kIdcExpired,
                     fmt::format(
                         "the IDC expired at {} (grace period {}){}", to_iso8601(idc->not_after()),
                         describe_duration(policy.grace_period),
                         policy.recovery_through_bc ? "; enroll again with the birth certificate" : ""))));
    }
    // OpenSSL treats notAfter itself as expired: one second before it.
    at = idc->not_after() - std::chrono::seconds{1};
  }
  const auto untrusted = untrusted_of(peer, alias.intermediates);
  if (auto ok = verified_by_tls(peer, alias.reenroll_verified, at)
                    ? Status{}
                    : verify_through(*idc, untrusted, alias.reenroll_trust, alias.reenroll_cas,
                                     alias.reenroll_partial, at);
      !ok) {
    const bool is_bc = static_cast<bool>(
        verify_through(*idc, untrusted, alias.enroll_trust, alias.enroll_cas, alias.enroll_partial, now));
    if (is_bc) {
      return std::unexpected(
          audited(a, refusal(Errc::forbidden, problem::kNotAnIdc,
                             "the client certificate is a birth certificate: use simpleenroll")));
    }
    return std::unexpected(
        audited(a, refusal(Errc::forbidden, problem::kUntrustedClientCert,
                           fmt::format("client certificate is not an IDC of this alias's CAs ({}): {}",
                                       fmt::join(policy.reenroll_cas, ", "), ok.error().detail))));
  }

  auto record = store_.find_certificate_by_serial(idc->serial_hex());
  if (!record) {
    if (record.error().code == Errc::not_found) {
      return std::unexpected(audited(
          a, refusal(Errc::forbidden, problem::kUnknownIdc, "the client certificate was not issued here")));
    }
    return std::unexpected(store_error(a, record.error(), "certificate lookup"));
  }
  if (record->der != idc->to_der() || std::find(policy.reenroll_cas.begin(), policy.reenroll_cas.end(),
                                                record->issuer_ca) == policy.reenroll_cas.end()) {
    return std::unexpected(audited(a, refusal(Errc::forbidden, problem::kUnknownIdc,
                                              "the client certificate is not an IDC of this alias's CAs")));
  }
  if (record->status == store::CertificateStatus::revoked) {
    return std::unexpected(audited(a, refusal(Errc::forbidden, problem::kIdcRevoked, "the IDC is revoked")));
  }
  if (!record->device_id) {
    return std::unexpected(
        audited(a, refusal(Errc::forbidden, problem::kUnknownIdc, "the IDC belongs to no device")));
  }
  auto device = store_.find_device(*record->device_id);
  if (!device) return std::unexpected(store_error(a, device.error(), "device lookup"));
  if (device->state == store::DeviceState::retired) {
    return std::unexpected(
        audited(a, refusal(Errc::forbidden, problem::kDeviceRetired,
                           fmt::format("device {} is retired", device->vendor_unique_id))));
  }
  auto ee_template = inventory::make_end_entity(*device, policy.name);
  if (!ee_template) {
    return std::unexpected(
        audited(a, refusal(Errc::forbidden, problem::kNoEndEntity, ee_template.error().detail)));
  }
  a.object = ee_template->username;

  // RFC 7030 §4.2.2: subject and SAN identical to the certificate being renewed (decoded, not bytes).
  if (!(csr->subject() == idc->subject())) {
    return std::unexpected(
        audited(a, refusal(Errc::forbidden, problem::kSubjectMismatch,
                           fmt::format("CSR subject {} differs from the IDC's {}", csr->subject().to_string(),
                                       idc->subject().to_string()))));
  }
  if (san_strings(csr->requested_subject_alt_name()) != san_strings(idc->subject_alt_name())) {
    return std::unexpected(audited(
        a, refusal(Errc::forbidden, problem::kSanMismatch, "CSR subjectAltName differs from the IDC's")));
  }
  const auto cp = challenge_of(*csr, peer);
  if (auto pop = check_pop(policy, peer, cp, false)) return std::unexpected(audited(a, std::move(*pop)));

  const auto key = csr->public_key();
  const bool same_key = key == idc->public_key();
  if (!same_key) {
    // Idempotent retry of a re-enrollment whose answer was lost.
    if (auto prior = store_.find_certificate_by_device_and_key(device->id, key.sha256_hex())) {
      return replay(a, *device, *prior);
    } else if (prior.error().code != Errc::not_found) {
      return std::unexpected(store_error(a, prior.error(), "certificate lookup"));
    }
  } else if (!policy.allow_key_reuse) {
    return std::unexpected(
        audited(a, refusal(Errc::forbidden, problem::kKeyReuse, "re-enrollment needs a new key (rekey)")));
  }
  if (policy.renewal_window && !idc->has_no_expiry() && now < idc->not_after() - *policy.renewal_window) {
    return std::unexpected(
        audited(a, refusal(Errc::forbidden, problem::kOutsideRenewalWindow,
                           fmt::format("the IDC may be renewed from {} ({} before it expires)",
                                       to_iso8601(idc->not_after() - *policy.renewal_window),
                                       describe_duration(*policy.renewal_window)))));
  }
  if (auto ok = ca::check_key_policy(alias.profile, key.info()); !ok) {
    return std::unexpected(audited(a, refusal(Errc::forbidden, problem::kKeyNotAllowed, ok.error().detail)));
  }
  auto ee = store_.find_end_entity(ee_template->username);
  if (!ee) {
    if (ee.error().code == Errc::not_found) {
      return std::unexpected(
          audited(a, refusal(Errc::forbidden, problem::kNoEndEntity, "the device has no end entity")));
    }
    return std::unexpected(store_error(a, ee.error(), "end entity lookup"));
  }
  if (!ee->est_alias.empty() && ee->est_alias != policy.name) {
    return std::unexpected(audited(a, refusal(Errc::forbidden, problem::kAliasMismatch,
                                              fmt::format("the end entity belongs to alias '{}', not '{}'",
                                                          ee->est_alias, policy.name))));
  }
  return issue(a, store::IssuanceKind::reenroll, *device, *ee, key, *csr, std::nullopt);
}

}  // namespace hallmark::ra

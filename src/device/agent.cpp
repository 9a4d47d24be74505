#include "hallmark/device/agent.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "flow.hpp"
#include "hallmark/core/bytes.hpp"
#include "hallmark/core/log.hpp"
#include "hallmark/crypto/digest.hpp"
#include "pkcs11.hpp"

namespace hallmark::device {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

const SystemClock kSystemClock;

const Clock& clock_of(const AgentOptions& o) {
  return o.clock != nullptr ? *o.clock : kSystemClock;
}

std::string join(const std::string& dir, std::string_view name) {
  return (fs::path(dir) / name).string();
}

std::string certs_pem(const std::vector<x509::Certificate>& certs) {
  std::string out;
  for (const auto& c : certs) out += c.to_pem();
  return out;
}

Result<std::vector<x509::Certificate>> load_chain(const std::string& path) {
  const auto text = HM_TRY(read_text_file(path));
  auto certs = x509::Certificate::parse_pem_chain(text);
  if (!certs) return std::unexpected(certs.error().with_context(path));
  return certs;
}

Status fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return fail(Errc::internal, fmt::format("cannot open {}", dir));
  ::fsync(fd);
  ::close(fd);
  return {};
}

// One attempt's failure: whether trying again may help, and when the server said to.
struct Failure {
  Error error;
  bool retryable = false;
  std::optional<std::chrono::seconds> retry_after;
};
Failure failure(Error e) {
  const bool retry = e.code == Errc::unavailable;
  return Failure{std::move(e), retry, std::nullopt};
}
Failure failure(const EstReply& r, std::string_view operation) {
  return Failure{r.to_error(operation),
                 r.status == 202 || r.status == 503 || r.status == 502 || r.status == 504, r.retry_after};
}

template <class T>
using Attempt = std::expected<T, Failure>;

// Runs `attempt` until it succeeds, fails for good, or the next wait would pass max_wait: 202/503
// wait what Retry-After says, network failures back off exponentially with jitter.
template <class T, class F>
Result<T> with_retries(const RetryPolicy& policy, F&& attempt) {
  const auto start = std::chrono::steady_clock::now();
  auto backoff = policy.first_backoff;
  std::mt19937_64 rng{std::random_device{}()};
  for (int n = 1;; ++n) {
    Attempt<T> r = attempt();
    if (r) return std::move(*r);
    Failure& f = r.error();
    if (!f.retryable) return std::unexpected(std::move(f.error));
    milliseconds delay{};
    if (f.retry_after) {
      delay = std::chrono::duration_cast<milliseconds>(*f.retry_after);
    } else {
      std::uniform_int_distribution<long> jitter(backoff.count() / 2, backoff.count());
      delay = milliseconds{jitter(rng)};
      backoff = std::min(backoff * 2, policy.max_backoff);
    }
    const auto spent = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
    if (spent + delay > policy.max_wait) {
      return fail(f.error.code, fmt::format("{} (gave up after {} attempts in {} ms: --max-wait)",
                                            f.error.detail, n, spent.count()));
    }
    log::warn("retry", {{"attempt", std::to_string(n)},
                        {"delay_ms", std::to_string(delay.count())},
                        {"reason", f.error.detail}});
    std::this_thread::sleep_for(delay);
  }
}

// The key a request carries. Made once and recorded as pending before the first request, so a retry
// after a lost answer, even from a new process, sends the same key and gets the same certificate.
struct NewKey {
  std::shared_ptr<const crypto::Signer> signer;
  std::string file;  // a PEM key file to copy into the new generation
  std::string uri;   // or a token key
};

Result<NewKey> pending_or_new_key(const AgentOptions& o) {
  const auto pem = join(o.dir, "pending.key");
  const auto uri_file = join(o.dir, "pending.uri");
  if (fs::exists(uri_file)) {
    auto uri = HM_TRY(read_text_file(uri_file));
    while (!uri.empty() && (uri.back() == '\n' || uri.back() == '\r')) uri.pop_back();
    auto signer = HM_TRY(detail::load_pkcs11_key(uri, o.pin_source));
    log::info("key-resumed", {{"key", uri}});
    return NewKey{std::move(signer), {}, uri};
  }
  if (fs::exists(pem)) {
    auto signer = HM_TRY(crypto::FileSigner::load(pem));
    log::info("key-resumed", {{"key", "pending.key"}});
    return NewKey{std::shared_ptr<const crypto::Signer>(std::move(signer)), pem, {}};
  }
  if (!o.new_key_token.empty()) {
    const auto label = "idc-" + to_hex(crypto::random_bytes(6));
    auto uri = HM_TRY(detail::generate_pkcs11_key(o.new_key_token, o.pin_source, label));
    HM_TRY_VOID(write_file_atomic(uri_file, as_bytes(uri + "\n"), 0600));
    auto signer = HM_TRY(detail::load_pkcs11_key(uri, o.pin_source));
    log::info("key-generated", {{"key", uri}});
    return NewKey{std::move(signer), {}, uri};
  }
  auto key = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
  HM_TRY_VOID(crypto::save_private_key(pem, key));
  return NewKey{std::make_shared<const crypto::FileSigner>(key, "file:" + pem), pem, {}};
}

struct DeviceConfig {
  std::string server;
  std::string bc_key;  // reference; a relative file is inside the state directory
  std::string pin_source;
  std::string key_token;
};

Result<DeviceConfig> read_config(const std::string& dir) {
  const auto path = join(dir, "device.json");
  if (!fs::exists(path)) {
    return fail(Errc::not_found,
                fmt::format("{} is not a device state directory (no device.json): enroll first", dir));
  }
  const auto text = HM_TRY(read_text_file(path));
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("server") || !j["server"].is_string()) {
    return fail(Errc::invalid_input, fmt::format("{}: not a device.json of hallmark-device", path));
  }
  DeviceConfig c;
  c.server = j["server"].get<std::string>();
  c.bc_key = j.value("bc_key", "");
  c.pin_source = j.value("pin_source", "");
  c.key_token = j.value("key_token", "");
  return c;
}

Status write_config(const std::string& dir, const DeviceConfig& c) {
  nlohmann::json j = {{"format", "hallmark-device-state"},
                      {"version", 1},
                      {"server", c.server},
                      {"bc_key", c.bc_key},
                      {"pin_source", c.pin_source},
                      {"key_token", c.key_token}};
  return write_file_atomic(join(dir, "device.json"), as_bytes(j.dump(2) + "\n"), 0644);
}

std::string resolve_key(const std::string& dir, const std::string& reference) {
  if (reference.starts_with("pkcs11:")) return reference;
  std::string path = reference.starts_with("file:") ? reference.substr(5) : reference;
  if (fs::path(path).is_relative()) path = join(dir, path);
  return "file:" + path;
}

// Writes the new generation beside the current one and switches `current` to it in one rename.
Result<Credentials> install(const std::string& dir, const x509::Certificate& idc,
                            const std::vector<x509::Certificate>& cacerts, const NewKey& key) {
  const std::string name = "idc-" + idc.serial_hex();
  const auto final_dir = join(dir, name);
  const auto current = join(dir, "current");
  std::error_code ec;
  std::string previous;
  if (fs::is_symlink(current)) previous = fs::read_symlink(current, ec).string();
  if (previous != name) {
    const auto tmp = join(dir, "." + name + ".tmp");
    fs::remove_all(tmp, ec);
    fs::remove_all(final_dir, ec);
    if (!fs::create_directory(tmp, ec))
      return fail(Errc::internal, fmt::format("cannot create {}: {}", tmp, ec.message()));
    fs::permissions(tmp, fs::perms::owner_all, ec);
    HM_TRY_VOID(write_file_atomic(join(tmp, "idc.pem"), as_bytes(idc.to_pem()), 0644));
    HM_TRY_VOID(write_file_atomic(join(tmp, "cacerts.pem"), as_bytes(certs_pem(cacerts)), 0644));
    if (!key.uri.empty()) {
      HM_TRY_VOID(write_file_atomic(join(tmp, "key.uri"), as_bytes(key.uri + "\n"), 0600));
    } else {
      const auto bytes = HM_TRY(read_file(key.file));
      HM_TRY_VOID(write_file_atomic(join(tmp, "key.pem"), bytes, 0600));
    }
    HM_TRY_VOID(fsync_dir(tmp));
    fs::rename(tmp, final_dir, ec);
    if (ec) return fail(Errc::internal, fmt::format("cannot rename {}: {}", tmp, ec.message()));
    const auto link = join(dir, ".current.tmp");
    fs::remove(link, ec);
    fs::create_symlink(name, link, ec);
    if (ec) return fail(Errc::internal, fmt::format("cannot create {}: {}", link, ec.message()));
    fs::rename(link, current, ec);
    if (ec) return fail(Errc::internal, fmt::format("cannot switch {}: {}", current, ec.message()));
    HM_TRY_VOID(fsync_dir(dir));
  }
  // The generation just replaced stays as a fallback; older ones go.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto n = entry.path().filename().string();
    if (n.starts_with("idc-") && n != name && n != previous) fs::remove_all(entry.path(), ec);
  }
  fs::remove(join(dir, "pending.key"), ec);
  fs::remove(join(dir, "pending.uri"), ec);
  return load_credentials(dir);
}

struct Issued {
  x509::Certificate idc;
  std::vector<x509::Certificate> cacerts;
};

// One connection: cacerts (checked), [csrattrs], CSR, simple(re)enroll, checks on the answer.
Attempt<Issued> attempt_enrollment(const ClientOptions& client, const Identity& identity,
                                   const x509::TrustStore& trust, const crypto::Signer& key, Seconds now,
                                   const x509::Certificate* current_idc, const std::string& ukid,
                                   const Secret* secret, bool pop_linking) {
  auto session = EstSession::open(client, &identity);
  if (!session) return std::unexpected(failure(session.error()));
  auto cacerts = (*session)->cacerts();
  if (!cacerts) return std::unexpected(failure(cacerts.error()));
  if (auto s = detail::check_cacerts(*cacerts, trust, now); !s) return std::unexpected(failure(s.error()));
  std::optional<std::string> binding;
  if (pop_linking) {
    auto b = (*session)->channel_binding();
    if (!b) return std::unexpected(failure(b.error()));
    binding = *b;
  }
  Result<x509::Csr> csr;
  const Secret* basic = nullptr;
  if (current_idc != nullptr) {
    csr = detail::make_reenroll_csr(*current_idc, key, binding);
  } else {
    auto attrs = (*session)->csrattrs();
    if (!attrs) return std::unexpected(failure(attrs.error()));
    csr = detail::make_enroll_csr(*attrs, detail::CsrPlan{ukid, secret, binding}, key);
    if (pop_linking) basic = secret;
  }
  if (!csr) return std::unexpected(failure(csr.error()));
  const auto operation = current_idc != nullptr ? "simplereenroll" : "simpleenroll";
  auto reply = (*session)->post_csr(operation, *csr, basic);
  if (!reply) return std::unexpected(failure(reply.error()));
  if (!reply->ok()) return std::unexpected(failure(*reply, operation));
  auto answer = decode_certs_only(*reply, operation);
  if (!answer) return std::unexpected(failure(answer.error()));
  if (auto s = detail::check_issued(*answer, key.public_key(), *cacerts, trust, now); !s) {
    return std::unexpected(failure(s.error()));
  }
  for (auto& c : *answer) {
    if (!c.is_ca()) return Issued{c, std::move(*cacerts)};
  }
  return std::unexpected(failure(Error{Errc::internal, "no leaf"}));
}

Result<Credentials> enroll_with(const Enrollment& e, const AgentOptions& o) {
  if (e.bc_chain.empty()) return fail(Errc::invalid_input, "no birth certificate");
  auto bc_key = HM_TRY(load_key(e.bc_key, o.pin_source));
  if (!(bc_key->public_key() == e.bc_chain.front().public_key())) {
    return fail(Errc::invalid_input, "the BC key does not match the birth certificate");
  }
  const Identity identity{bc_key, e.bc_chain};
  const auto trust = detail::make_trust_store(e.trust);
  const auto key = HM_TRY(pending_or_new_key(o));
  const ClientOptions client{e.server, e.trust, o.timeout, o.tls13_only};
  const auto ukid = ukid_of(e.bc_chain.front());
  const Secret* secret = e.ukid_secret ? &*e.ukid_secret : nullptr;
  auto issued = HM_TRY(with_retries<Issued>(o.retry, [&] {
    return attempt_enrollment(client, identity, trust, *key.signer, clock_of(o).now(), nullptr, ukid, secret,
                              o.pop_linking);
  }));
  auto creds = HM_TRY(install(o.dir, issued.idc, issued.cacerts, key));
  log::info("enrolled", {{"subject", creds.idc.subject().to_string()},
                         {"serial", creds.idc.serial_hex()},
                         {"not_after", to_iso8601(creds.idc.not_after())}});
  return creds;
}

}  // namespace

Result<ChipImage> ChipImage::parse(std::string_view json, std::string_view name) {
  const auto bad = [&](std::string_view why) {
    return fail(Errc::invalid_input, fmt::format("chip image {}: {}", name, why));
  };
  const auto j = nlohmann::json::parse(json, nullptr, false);
  if (!j.is_object() || j.value("format", "") != "hallmark-chip-image")
    return bad("not a hallmark chip image");
  if (j.value("version", 0) != 1) return bad("unsupported version");
  ChipImage c;
  const auto str = [&](const char* k) {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : "";
  };
  c.unique_id = str("uniqueId");
  c.part_number = str("partNumber");
  c.mode = str("mode");
  c.reel = str("reel");
  if (c.mode != "idc" && c.mode != "bc" && c.mode != "bc-secret")
    return bad("mode must be idc, bc or bc-secret");
  auto key = crypto::PrivateKey::parse_pem(str("privateKey"));
  if (!key) return bad("privateKey: " + key.error().detail);
  c.key = std::move(*key);
  if (!j.contains("certificateChain") || !j["certificateChain"].is_array() || j["certificateChain"].empty()) {
    return bad("no certificateChain");
  }
  for (const auto& pem : j["certificateChain"]) {
    if (!pem.is_string()) return bad("certificateChain holds a non-string");
    auto cert = x509::Certificate::parse_pem(pem.get<std::string>());
    if (!cert) return bad("certificateChain: " + cert.error().detail);
    c.chain.push_back(std::move(*cert));
  }
  if (!(c.chain.front().public_key() == c.key.public_key()))
    return bad("the key does not match the certificate");
  if (c.mode == "bc-secret") {
    const auto s = str("ukidSecret");
    if (s.empty()) return bad("bc-secret chip without ukidSecret");
    c.ukid_secret = Secret(s);
  }
  return c;
}

Result<ChipImage> ChipImage::load(const std::string& path) {
  const auto text = HM_TRY(read_text_file(path));
  return parse(text, path);
}

std::string ukid_of(const x509::Certificate& bc) {
  return bc.public_key().sha256_hex();
}

Result<std::shared_ptr<const crypto::Signer>> load_key(const std::string& reference,
                                                       const std::string& pin_source) {
  if (reference.starts_with("pkcs11:")) return detail::load_pkcs11_key(reference, pin_source);
  const std::string path = reference.starts_with("file:") ? reference.substr(5) : reference;
  auto signer = HM_TRY(crypto::FileSigner::load(path));
  return std::shared_ptr<const crypto::Signer>(std::move(signer));
}

Result<Credentials> enroll(const Enrollment& e, const AgentOptions& o) {
  if (e.bc_chain.empty()) return fail(Errc::invalid_input, "no birth certificate");
  if (e.trust.empty()) return fail(Errc::invalid_input, "no trust anchor");
  std::error_code ec;
  fs::create_directories(o.dir, ec);
  if (ec) return fail(Errc::internal, fmt::format("cannot create {}: {}", o.dir, ec.message()));
  // What recovery needs later: the BC, where its key lives, the secret, the anchors, the server.
  HM_TRY_VOID(write_file_atomic(join(o.dir, "trust.pem"), as_bytes(certs_pem(e.trust)), 0644));
  HM_TRY_VOID(write_file_atomic(join(o.dir, "bc.pem"), as_bytes(certs_pem(e.bc_chain)), 0644));
  DeviceConfig c{e.server.to_string(), e.bc_key, o.pin_source, o.new_key_token};
  if (!e.bc_key.starts_with("pkcs11:")) {
    const std::string src = e.bc_key.starts_with("file:") ? e.bc_key.substr(5) : e.bc_key;
    if (fs::absolute(src) != fs::absolute(join(o.dir, "bc.key"))) {
      const auto bytes = HM_TRY(read_file(src));
      HM_TRY_VOID(write_file_atomic(join(o.dir, "bc.key"), bytes, 0600));
    }
    c.bc_key = "bc.key";
  }
  if (e.ukid_secret) {
    HM_TRY_VOID(write_file_atomic(join(o.dir, "ukid-secret"),
                                  as_bytes(std::string(e.ukid_secret->reveal()) + "\n"), 0600));
  } else {
    fs::remove(join(o.dir, "ukid-secret"), ec);
  }
  HM_TRY_VOID(write_config(o.dir, c));
  Enrollment local = e;
  local.bc_key = resolve_key(o.dir, c.bc_key);
  return enroll_with(local, o);
}

Result<Credentials> recover(const AgentOptions& options) {
  const auto c = HM_TRY(read_config(options.dir));
  AgentOptions o = options;
  if (o.pin_source.empty()) o.pin_source = c.pin_source;
  if (o.new_key_token.empty()) o.new_key_token = c.key_token;
  Enrollment e;
  e.server = HM_TRY(ServerUrl::parse(c.server));
  e.trust = HM_TRY(load_chain(join(o.dir, "trust.pem")));
  e.bc_chain = HM_TRY(load_chain(join(o.dir, "bc.pem")));
  e.bc_key = resolve_key(o.dir, c.bc_key);
  if (fs::exists(join(o.dir, "ukid-secret")))
    e.ukid_secret = HM_TRY(read_secret("file:" + join(o.dir, "ukid-secret")));
  log::info("recovering", {{"through", "bc"}, {"bc", e.bc_chain.front().subject().to_string()}});
  return enroll_with(e, o);
}

Result<Credentials> load_credentials(const std::string& dir) {
  const auto current = join(dir, "current");
  if (!fs::exists(join(current, "idc.pem"))) {
    return fail(Errc::not_found, fmt::format("no IDC in {}: enroll first", dir));
  }
  Credentials c;
  std::error_code ec;
  c.directory = fs::canonical(current, ec).string();
  c.idc = HM_TRY(x509::Certificate::load(join(current, "idc.pem")));
  c.cacerts = HM_TRY(load_chain(join(current, "cacerts.pem")));
  if (fs::exists(join(current, "key.uri"))) {
    auto uri = HM_TRY(read_text_file(join(current, "key.uri")));
    while (!uri.empty() && (uri.back() == '\n' || uri.back() == '\r')) uri.pop_back();
    c.key = uri;
  } else {
    c.key = "file:" + join(c.directory, "key.pem");
  }
  return c;
}

Result<Credentials> reenroll(const AgentOptions& options) {
  const auto c = HM_TRY(read_config(options.dir));
  AgentOptions o = options;
  if (o.pin_source.empty()) o.pin_source = c.pin_source;
  if (o.new_key_token.empty()) o.new_key_token = c.key_token;
  const auto creds = HM_TRY(load_credentials(o.dir));
  const auto server = HM_TRY(ServerUrl::parse(c.server));
  const auto anchors = HM_TRY(load_chain(join(o.dir, "trust.pem")));
  auto current_key = HM_TRY(load_key(creds.key, o.pin_source));
  std::vector<x509::Certificate> chain{creds.idc};
  for (auto& i : detail::intermediates_of(creds.cacerts)) chain.push_back(std::move(i));
  const Identity identity{current_key, chain};
  NewKey key;
  if (o.keep_key) {
    key.signer = current_key;
    if (creds.key.starts_with("pkcs11:")) {
      key.uri = creds.key;
    } else {
      key.file = creds.key.substr(5);
    }
  } else {
    key = HM_TRY(pending_or_new_key(o));
  }
  const auto trust = detail::make_trust_store(anchors);
  const ClientOptions client{server, anchors, o.timeout, o.tls13_only};
  auto issued = HM_TRY(with_retries<Issued>(o.retry, [&] {
    return attempt_enrollment(client, identity, trust, *key.signer, clock_of(o).now(), &creds.idc, {},
                              nullptr, o.pop_linking);
  }));
  if (issued.idc == creds.idc) return fail(Errc::conflict, "the server returned the current IDC again");
  auto out = HM_TRY(install(o.dir, issued.idc, issued.cacerts, key));
  log::info("reenrolled", {{"subject", out.idc.subject().to_string()},
                           {"serial", out.idc.serial_hex()},
                           {"previous", creds.idc.serial_hex()},
                           {"not_after", to_iso8601(out.idc.not_after())}});
  return out;
}

std::optional<Seconds> renewal_time(const x509::Certificate& idc, const RenewalPolicy& policy, Seconds now) {
  if (policy.force) return now;
  if (idc.has_no_expiry()) return std::nullopt;
  const auto lifetime = idc.not_after() - idc.not_before();
  const auto before = policy.before.value_or(std::chrono::duration_cast<std::chrono::seconds>(lifetime / 3));
  return idc.not_after() - before;
}

Result<StatusReport> status(const AgentOptions& o, const RenewalPolicy& policy) {
  const auto c = HM_TRY(read_config(o.dir));
  const auto creds = HM_TRY(load_credentials(o.dir));
  const auto anchors = HM_TRY(load_chain(join(o.dir, "trust.pem")));
  const auto now = clock_of(o).now();
  StatusReport r;
  r.subject = creds.idc.subject().to_string();
  r.issuer = creds.idc.issuer().to_string();
  r.serial = creds.idc.serial_hex();
  r.not_before = creds.idc.not_before();
  r.not_after = creds.idc.not_after();
  r.no_expiry = creds.idc.has_no_expiry();
  r.renew_at = renewal_time(creds.idc, policy, now);
  r.key = creds.key;
  r.server = c.server;
  const auto trust = detail::make_trust_store(anchors);
  if (auto path = trust.verify(creds.idc, creds.cacerts, now); path) {
    r.verifies = true;
  } else {
    r.verify_error = path.error().detail;
  }
  return r;
}

}  // namespace hallmark::device

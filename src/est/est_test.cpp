// EST codecs, configuration and routes, without sockets (the handler is a plain function).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "../ra/test_pki.hpp"
#include "hallmark/core/log.hpp"
#include "hallmark/est/config.hpp"
#include "hallmark/est/server.hpp"

namespace hallmark {
namespace {

using testpki::new_key;

// ---- codecs ----

TEST(EstCodec, BodyDecodesWithAndWithoutLineBreaks) {
  const Bytes der = crypto::random_bytes(200);
  const auto flat = crypto::base64_encode(der, false);
  const auto wrapped = crypto::base64_encode(der, true);
  ASSERT_NE(wrapped.find('\n'), std::string::npos);
  std::string crlf;
  for (char c : wrapped) {
    if (c == '\n') crlf += '\r';
    crlf += c;
  }
  for (const auto& text :
       {flat, wrapped, crlf, "  " + flat + "\r\n", flat.substr(0, 10) + " \t" + flat.substr(10)}) {
    auto out = est::decode_body(text);
    ASSERT_TRUE(out) << out.error().detail;
    EXPECT_EQ(*out, der);
  }
  auto pem = est::decode_body("-----BEGIN CERTIFICATE REQUEST-----\n" + wrapped +
                              "-----END CERTIFICATE REQUEST-----\n");
  ASSERT_TRUE(pem) << pem.error().detail;
  EXPECT_EQ(*pem, der);
}

TEST(EstCodec, GarbageAndEmptyBodiesAreRefused) {
  for (const char* text : {"", "   \r\n", "this is not base64!", "QUJD=RA==", "-----BEGIN X-----\nQUJD\n"}) {
    auto out = est::decode_body(text);
    EXPECT_FALSE(out) << text;
    if (!out) {
      EXPECT_EQ(out.error().code, Errc::invalid_input);
    }
  }
}

TEST(EstCodec, CsrAttrsDerIsExactAndReadableByOpenssl) {
  auto der = est::make_csr_attrs_der({"2.5.4.5", "1.2.840.113549.1.9.7"});
  ASSERT_TRUE(der);
  EXPECT_EQ(to_hex(*der),
            "3010"
            "0603550405"
            "06092a864886f70d010907");
  EXPECT_EQ(to_hex(*est::make_csr_attrs_der({})), "3000");
  EXPECT_EQ(to_hex(*est::make_csr_attrs_der({"2.999.3"})),
            "3005"
            "0603883703");
  for (const char* bad : {"", "1", "1.", "3.1", "1.40", "a.b", "1..2"})
    EXPECT_FALSE(est::make_csr_attrs_der({bad})) << bad;

  // A long SEQUENCE needs the long length form; openssl reads it back.
  std::vector<std::string> many(20, "1.2.840.113549.1.9.7");
  many.push_back("2.5.4.5");
  auto big = est::make_csr_attrs_der(many);
  ASSERT_TRUE(big);
  EXPECT_EQ(to_hex(*big).substr(0, 6), "3081e1");
  const std::string path = ::testing::TempDir() + "csrattrs.der";
  ASSERT_TRUE(write_file_atomic(path, *big));
  FILE* p = ::popen(("openssl asn1parse -inform DER -in " + path + " 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << out;
  EXPECT_NE(out.find("challengePassword"), std::string::npos) << out;
  EXPECT_NE(out.find("serialNumber"), std::string::npos) << out;
}

TEST(EstCodec, MediaTypesBasicAuthAndStatuses) {
  EXPECT_TRUE(est::has_media_type("application/pkcs10", "application/pkcs10"));
  EXPECT_TRUE(est::has_media_type("Application/PKCS10; charset=binary", "application/pkcs10"));
  EXPECT_FALSE(est::has_media_type("application/pkcs10x", "application/pkcs10"));
  EXPECT_FALSE(est::has_media_type("text/plain", "application/pkcs10"));

  http::Headers h;
  EXPECT_FALSE(est::basic_password(h));
  h.set("Authorization", "Basic " + crypto::base64_encode(as_bytes("device:pa:ss")));
  ASSERT_TRUE(est::basic_password(h));
  EXPECT_EQ(est::basic_password(h)->reveal(), "pa:ss");
  h.set("Authorization", "Bearer abc");
  EXPECT_FALSE(est::basic_password(h));

  const std::pair<Errc, int> statuses[] = {{Errc::invalid_input, 400}, {Errc::unauthenticated, 401},
                                           {Errc::forbidden, 403},     {Errc::not_found, 404},
                                           {Errc::conflict, 409},      {Errc::unavailable, 503},
                                           {Errc::internal, 500}};
  for (const auto& [code, status] : statuses)
    EXPECT_EQ(est::status_of(ra::Refusal{code, "x", "y", {}}), status);
  auto r =
      est::to_problem(ra::Refusal{Errc::unavailable, "store-unavailable", "down", std::chrono::seconds{7}});
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers.get("Retry-After"), "7");
  EXPECT_EQ(r.headers.get("Content-Type"), "application/problem+json");
  EXPECT_NE(r.body.find("\"code\":\"store-unavailable\""), std::string::npos) << r.body;
}

// ---- configuration ----

constexpr const char* kGoodConfig = R"(
[pki]
organization = "Acme"

[server]
listen = "127.0.0.1"
port = 0
threads = 2
max_body_bytes = 65536
session_tickets = true
header_timeout = "2s"
drain_delay = "0"

[server.proxy]
trusted_fingerprints = ["AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99"]
trusted_cas = ["proxy-ca"]
header = "X-Client-Cert"

[est]
default_alias = "widget"

[est.alias.widget]
ca = "idc"
enroll_anchors = ["bc"]
after_issue = "revoke-bc"
pop_linking = "optional"
lifetime = "365d"
renewal_window = "30d"
grace_period = "7d"

[est.alias.vendor-x]
ca = "idc"
profile = "idc"
authenticators = ["bc-secret"]
enroll_anchors = ["vendor-bc"]
after_issue = "consume-bc"
serverkeygen = true
base64_wrap = true
variables = { product = "X Widget" }
)";

TEST(EstConfig, ParsesServerAndAliases) {
  auto c = est::parse_serve_config(kGoodConfig, "hallmark.toml");
  ASSERT_TRUE(c) << c.error().detail;
  EXPECT_EQ(c->server.listen, "127.0.0.1");
  EXPECT_EQ(c->server.port, 0);
  EXPECT_EQ(c->server.threads, 2u);
  EXPECT_EQ(c->server.max_body_bytes, 65536u);
  EXPECT_TRUE(c->server.session_tickets);
  EXPECT_EQ(c->server.timeouts.header, std::chrono::milliseconds{2000});
  EXPECT_EQ(c->server.timeouts.drain_delay, std::chrono::milliseconds{0});
  EXPECT_EQ(c->server.tls_cert, "tls/server.pem");
  EXPECT_EQ(c->server.trusted_proxies.fingerprints,
            std::vector<std::string>{"aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899"});
  EXPECT_EQ(c->trusted_proxy_cas, std::vector<std::string>{"proxy-ca"});
  EXPECT_EQ(c->server.trusted_proxies.header, "X-Client-Cert");
  EXPECT_EQ(c->default_alias, "widget");
  ASSERT_EQ(c->aliases.size(), 2u);
  const auto& v = c->aliases[0];
  EXPECT_EQ(v.name, "vendor-x");
  EXPECT_EQ(v.authenticators, std::vector<ra::Authenticator>{ra::Authenticator::bc_secret});
  EXPECT_EQ(v.after_issue, ra::AfterIssue::consume_bc);
  EXPECT_TRUE(v.serverkeygen);
  EXPECT_TRUE(v.base64_wrap);
  EXPECT_FALSE(v.lifetime);
  EXPECT_EQ(v.variables.at("product"), "X Widget");
  const auto& w = c->aliases[1];
  EXPECT_EQ(w.name, "widget");
  EXPECT_EQ(w.pop_linking, ra::PopLinking::optional);
  EXPECT_EQ(w.lifetime, std::chrono::seconds{365 * 86400});
  EXPECT_EQ(w.renewal_window, std::chrono::seconds{30 * 86400});
  EXPECT_EQ(w.grace_period, std::chrono::seconds{7 * 86400});
  EXPECT_EQ(w.reenroll_cas, std::vector<std::string>{});  // make_alias defaults it to the issuing CA
}

TEST(EstConfig, NoEstTablesIsValidAndASingleAliasIsTheDefault) {
  auto c = est::parse_serve_config("[pki]\norganization = \"Acme\"\n", "hallmark.toml");
  ASSERT_TRUE(c) << c.error().detail;
  EXPECT_TRUE(c->aliases.empty());
  EXPECT_EQ(c->server.port, 8443);
  auto one =
      est::parse_serve_config("[est.alias.a]\nca = \"idc\"\nenroll_anchors = [\"bc\"]\n", "hallmark.toml");
  ASSERT_TRUE(one) << one.error().detail;
  EXPECT_EQ(one->default_alias, "a");
}

TEST(EstConfig, MessagesAreExact) {
  const std::pair<const char*, const char*> cases[] = {
      {"[server]\nthreads = \"two\"\n", "hallmark.toml: [server] threads must be an integer"},
      {"[server]\nthreads = 5000\n", "hallmark.toml: [server] threads must be between 0 and 1024"},
      {"[server]\nport = 70000\n", "hallmark.toml: [server] port must be between 0 and 65535"},
      {"[server]\nlisten_on = \"x\"\n", "hallmark.toml: [server] unknown key 'listen_on'"},
      {"[server]\nheader_timeout = \"10\"\n",
       "hallmark.toml: [server] header_timeout '10' is not a duration (use <N>y, <N>d, <N>h, <N>m, <N>s or "
       "<N>ms)"},
      {"[server]\nmin_tls_version = \"1.1\"\n",
       "hallmark.toml: [server] min_tls_version must be \"1.2\" or \"1.3\" (got '1.1')"},
      {"[server]\nmax_body_bytes = 0\n",
       "hallmark.toml: [server] max_body_bytes must be between 1 and 4294967296"},
      {"[server.proxy]\ntrusted_fingerprints = [\"abc\"]\n",
       "hallmark.toml: [server.proxy] trusted_fingerprints 'abc' is not a SHA-256 fingerprint (64 hex "
       "digits)"},
      {"[server.proxy]\nheader = \"X Bad\"\n",
       "hallmark.toml: [server.proxy] header 'X Bad' is not a header name"},
      {"[est]\ndefault_alias = \"nope\"\n",
       "hallmark.toml: [est] default_alias 'nope' names no [est.alias.nope] table"},
      {"[est]\naliases = 1\n", "hallmark.toml: [est] unknown key 'aliases'"},
      {"[est.alias.Bad]\nca = \"idc\"\n",
       "hallmark.toml: [est.alias.Bad] invalid alias name: use 1-63 of a-z 0-9 -"},
      {"[est.alias.a]\nenroll_anchors = [\"bc\"]\n",
       "hallmark.toml: [est.alias.a] ca is required (the issuing CA's name)"},
      {"[est.alias.a]\nca = \"idc\"\n",
       "hallmark.toml: [est.alias.a] enroll_anchors must name at least one CA (the BC anchors)"},
      {"[est.alias.a]\nca = \"idc\"\nenroll_anchors = [\"bc\"]\nafter_issue = \"burn\"\n",
       "hallmark.toml: [est.alias.a] after_issue must be one of none, revoke-bc, consume-bc (got 'burn')"},
      {"[est.alias.a]\nca = \"idc\"\nenroll_anchors = [\"bc\"]\npop_linking = true\n",
       "hallmark.toml: [est.alias.a] pop_linking must be a string"},
      {"[est.alias.a]\nca = \"idc\"\nenroll_anchors = [\"bc\"]\nauthenticators = [\"password\"]\n",
       "hallmark.toml: [est.alias.a] authenticators unknown authenticator 'password' (known: bc, bc-secret)"},
      {"[est.alias.a]\nca = \"idc\"\nenroll_anchors = [\"bc\"]\nlifetime = \"soon\"\n",
       "hallmark.toml: [est.alias.a] lifetime 'soon' is not a duration (use <N>y, <N>d, <N>h, <N>m, <N>s or "
       "<N>ms, or "
       "\"forever\")"},
      {"[est.alias.a]\nca = \"idc\"\nenroll_anchors = [\"bc\"]\nrenewal_window = \"forever\"\n",
       "hallmark.toml: [est.alias.a] renewal_window 'forever' is not a duration (use <N>y, <N>d, <N>h, <N>m, "
       "<N>s or "
       "<N>ms)"},
      {"[est.alias.a]\nca = \"idc\"\nenroll_anchors = [\"bc\"]\nrecovery_through_bc = true\nafter_issue = "
       "\"consume-bc\"\n"
       "authenticators = [\"bc-secret\"]\n",
       "hallmark.toml: [est.alias.a] recovery_through_bc needs after_issue = \"none\" (a consumed BC cannot "
       "authenticate a recovery)"},
      {"[est.alias.a]\nca = \"idc\"\nenroll_anchors = [\"bc\"]\nvariables = { serial = \"x\" }\n",
       "hallmark.toml: [est.alias.a] variables 'serial' comes from the device, not the alias"},
      {"[est.alias.a]\nca = \"idc\"\nenroll_anchors = [\"bc\"]\ncolour = \"red\"\n",
       "hallmark.toml: [est.alias.a] unknown key 'colour'"},
      {"[server\n", "hallmark.toml:1:8: Error while parsing table header: expected ']', saw '\\n'"},
  };
  for (const auto& [text, message] : cases) {
    auto c = est::parse_serve_config(text, "hallmark.toml");
    ASSERT_FALSE(c) << text;
    EXPECT_EQ(c.error().code, Errc::invalid_input);
    EXPECT_EQ(c.error().detail, message) << text;
  }
}

// ---- routes, without sockets ----

class EstRoutes : public ::testing::Test {
 protected:
  void SetUp() override {
    log::set_level(log::Level::error);
    auto p = testpki::option2_policy("widget");
    p.serverkeygen = true;
    auto wrapped = testpki::option2_policy("wrapped");
    wrapped.base64_wrap = true;
    std::vector<ra::Alias> aliases{testpki::make_test_alias(w, p), testpki::make_test_alias(w, wrapped)};
    ra::RegistrarOptions o;
    o.default_alias = "widget";
    o.variables = {{"org", "Test OEM"}, {"product", "Test Widget"}};
    reg = std::make_unique<ra::Registrar>(w.store(), w.clock(), std::move(aliases), o);
    est = std::make_unique<est::EstService>(*reg);
    est->install(router);
  }

  http::Request get(std::string target) {
    http::Request r;
    r.method = "GET";
    r.target = std::move(target);
    r.request_id = testpki::random_hex(8);
    r.peer.remote_address = "127.0.0.1:1";
    return r;
  }
  http::Request post(std::string target, std::string body, const testpki::Device* d = nullptr) {
    auto r = get(std::move(target));
    r.method = "POST";
    r.headers.set("Content-Type", "application/pkcs10");
    r.body = std::move(body);
    if (d != nullptr) r.peer.chain = d->bc_chain;
    return r;
  }
  std::string csr_b64(const testpki::Device& d, bool wrap = false) {
    auto k = new_key();
    return crypto::base64_encode(testpki::make_csr(*k.signer, {{"serialNumber", d.ukid}}).to_der(), wrap);
  }
  void expect_problem(const http::Response& r, int status, std::string_view code) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.headers.get("Content-Type"), "application/problem+json");
    EXPECT_NE(r.body.find("\"code\":\"" + std::string(code) + "\""), std::string::npos) << r.body;
  }

  testpki::World w;
  std::unique_ptr<ra::Registrar> reg;
  std::unique_ptr<est::EstService> est;
  http::Router router;
};

TEST_F(EstRoutes, CacertsWithAndWithoutAlias) {
  for (const char* target : {"/.well-known/est/cacerts", "/.well-known/est/widget/cacerts"}) {
    auto r = router(get(target));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.headers.get("Content-Type"), "application/pkcs7-mime; smime-type=certs-only");
    EXPECT_EQ(r.headers.get("Content-Transfer-Encoding"), "base64");
    EXPECT_EQ(r.body.find('\n'), std::string::npos);
    auto der = crypto::base64_decode(r.body);
    ASSERT_TRUE(der);
    auto certs = x509::parse_pkcs7_certs_only(*der);
    ASSERT_TRUE(certs);
    EXPECT_EQ(*certs, w.idc_ca.chain);
  }
  auto wrapped = router(get("/.well-known/est/wrapped/cacerts"));
  ASSERT_EQ(wrapped.status, 200);
  EXPECT_NE(wrapped.body.find('\n'), std::string::npos);
}

TEST_F(EstRoutes, CsrattrsIsDerBase64) {
  auto r = router(get("/.well-known/est/csrattrs"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.get("Content-Type"), "application/csrattrs");
  EXPECT_EQ(to_hex(*crypto::base64_decode(r.body)), "30050603550405");
}

TEST_F(EstRoutes, SimpleenrollIssuesACertsOnlyResponse) {
  auto d = w.ready_device(w.bc_ca);
  auto r = router(post("/.well-known/est/simpleenroll", csr_b64(d, true), &d));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.get("Content-Type"), "application/pkcs7-mime; smime-type=certs-only");
  auto certs = x509::parse_pkcs7_certs_only(*crypto::base64_decode(r.body));
  ASSERT_TRUE(certs);
  ASSERT_EQ(certs->size(), 1u);
  EXPECT_EQ(certs->front().subject().get("serialNumber"), d.ukid);
  EXPECT_EQ(w.certificate_count(), 1u);
}

TEST_F(EstRoutes, ProtocolRefusalsAreAudited) {
  auto d = w.ready_device(w.bc_ca);
  struct Case {
    http::Request request;
    int status;
    const char* code;
  };
  auto wrong_type = post("/.well-known/est/simpleenroll", csr_b64(d), &d);
  wrong_type.headers.set("Content-Type", "application/octet-stream");
  auto no_type = post("/.well-known/est/simpleenroll", csr_b64(d), &d);
  no_type.headers.erase("Content-Type");
  auto spoofed = post("/.well-known/est/simpleenroll", csr_b64(d), &d);
  spoofed.spoofed_client_cert_header = true;
  std::vector<Case> cases;
  cases.push_back({wrong_type, 415, est::problem::kMediaType});
  cases.push_back({no_type, 415, est::problem::kMediaType});
  cases.push_back({post("/.well-known/est/simpleenroll", "!!garbage!!", &d), 400, est::problem::kBadBase64});
  cases.push_back({spoofed, 400, ra::problem::kSpoofedHeader});
  cases.push_back(
      {post("/.well-known/est/nope/simpleenroll", csr_b64(d), &d), 404, ra::problem::kUnknownAlias});
  cases.push_back(
      {post("/.well-known/est/../simpleenroll", csr_b64(d), &d), 404, ra::problem::kUnknownAlias});
  cases.push_back(
      {post("/.well-known/est/a%2Fb/simpleenroll", csr_b64(d), &d), 404, ra::problem::kUnknownAlias});
  cases.push_back({post("/.well-known/est/widget%2F..%2Fx/simpleenroll", csr_b64(d), &d), 404,
                   ra::problem::kUnknownAlias});
  for (auto& c : cases) {
    const auto before = w.audit().size();
    auto r = router(c.request);
    expect_problem(r, c.status, c.code);
    EXPECT_EQ(w.certificate_count(), 0u);
    const auto audit = w.audit();
    ASSERT_EQ(audit.size(), before + 1) << c.request.target;
    EXPECT_EQ(audit.back().event.outcome, store::Outcome::refused);
    EXPECT_EQ(audit.back().event.request_id, c.request.request_id);
    EXPECT_TRUE(audit.back().event.reason.starts_with(std::string(c.code) + ": "))
        << audit.back().event.reason;
  }
}

TEST_F(EstRoutes, MethodsOperationsAndFullcmc) {
  expect_problem(router(get("/.well-known/est/simpleenroll")), 405, est::problem::kMethodNotAllowed);
  EXPECT_EQ(router(get("/.well-known/est/simpleenroll")).headers.get("Allow"), "POST");
  expect_problem(router(post("/.well-known/est/cacerts", "")), 405, est::problem::kMethodNotAllowed);
  expect_problem(router(get("/.well-known/est/widget/enrol")), 404, est::problem::kUnknownOperation);
  expect_problem(router(post("/.well-known/est/fullcmc", "")), 501, est::problem::kFullCmc);
  expect_problem(router(post("/.well-known/est/widget/fullcmc", "")), 501, est::problem::kFullCmc);
}

TEST_F(EstRoutes, ServerkeygenAnswersMultipartWithAPkcs8KeyAndTheCertificate) {
  auto d = w.ready_device(w.bc_ca);
  auto r = router(post("/.well-known/est/widget/serverkeygen", csr_b64(d), &d));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.get("Content-Type"), "multipart/mixed; boundary=hallmark-est-boundary");
  const std::string& b = r.body;
  const auto key_at = b.find("Content-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64\r\n\r\n");
  const auto cert_at = b.find("Content-Type: application/pkcs7-mime; smime-type=certs-only\r\n");
  ASSERT_NE(key_at, std::string::npos) << b;
  ASSERT_NE(cert_at, std::string::npos) << b;
  EXPECT_TRUE(b.ends_with("\r\n--hallmark-est-boundary--\r\n"));
  const auto key_b64_begin = b.find("\r\n\r\n", key_at) + 4;
  const auto key_b64 = b.substr(key_b64_begin, b.find("\r\n", key_b64_begin) - key_b64_begin);
  auto key = crypto::PrivateKey::parse_der(*crypto::base64_decode(key_b64));
  ASSERT_TRUE(key) << key.error().detail;
  const auto cert_b64_begin = b.find("\r\n\r\n", cert_at) + 4;
  const auto cert_b64 = b.substr(cert_b64_begin, b.find("\r\n", cert_b64_begin) - cert_b64_begin);
  auto certs = x509::parse_pkcs7_certs_only(*crypto::base64_decode(cert_b64));
  ASSERT_TRUE(certs);
  ASSERT_EQ(certs->size(), 1u);
  EXPECT_TRUE(certs->front().public_key() == key->public_key());
}

}  // namespace
}  // namespace hallmark

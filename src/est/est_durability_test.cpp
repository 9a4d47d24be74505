// Operations of the real `hallmark serve` under failure, driven by curl + openssl:
//  - durability: SIGKILL during a burst of enrollments on durable SQLite; after a restart every IDC
//    a client received is in the database, and every client that retries gets its IDC (the same one);
//  - scale-out: two servers on one PostgreSQL database, each device asking both at once;
//  - store down: PostgreSQL stopped under a running server gives 503 + Retry-After, and the server
//    enrolls again once PostgreSQL is back.
#include <fmt/format.h>

#include <fstream>
#include <map>
#include <set>

#include "pg_harness.hpp"
#include "serve_harness.hpp"

namespace hallmark {
namespace {

namespace fs = std::filesystem;
using namespace hallmark::testing;

const std::string kServeConfig = server_config(2, 8) + "drain_delay = \"0\"\ndrain_timeout = \"5s\"\n" +
                                 default_alias_config("widget", "bc");

// A device ready to enroll: its BC (in the inventory, mounted), a new key and the CSR for it.
struct Enrollee {
  Device device;
  std::string key;
  std::string csr;  // base64 file
};

// One curl answer of a parallel burst.
struct Answer {
  int status = 0;  // 0: no HTTP answer
  std::string body;
};

class Fleet : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = std::make_unique<TempDir>("hallmark-fleet"); }
  void TearDown() override {
    for (auto& s : servers_) s->kill();
    servers_.clear();
    store_.reset();
    dir_.reset();
  }

  [[nodiscard]] std::string home() const { return dir_->path().string() + "/home"; }
  [[nodiscard]] std::string dir() const { return dir_->path().string(); }

  // hallmark init (with --db when given), the serve configuration, the test's own store handle.
  void init_home(const std::string& db_url) {
    testing::init_home(home(), kServeConfig, db_url.empty() ? std::string() : " --db " + shell_quote(db_url));
    ASSERT_FALSE(HasFatalFailure());
    db_ = db_url;
    store_ = open_migrated_store(db_url.empty() ? "sqlite:" + home() + "/hallmark.db" : db_url);
    ASSERT_NE(store_, nullptr);
  }

  ServeProcess& start_server() {
    servers_.push_back(std::make_unique<ServeProcess>());
    auto& s = *servers_.back();
    start_serve(s, home(), dir(),
                db_.empty() ? std::vector<std::string>{} : std::vector<std::string>{"--db", db_});
    return s;
  }

  std::vector<Enrollee> enrollees(int n) {
    std::vector<Enrollee> out;
    for (int i = 0; i < n; ++i) {
      Enrollee e;
      e.device = make_device(*store_, home(), dir());
      e.key = new_key_file(dir());
      e.csr = openssl_csr(dir(), e.key, "/serialNumber=" + e.device.ukid + "/CN=widget");
      out.push_back(std::move(e));
    }
    return out;
  }

  std::string enroll_args(const Enrollee& e, const ServeProcess& server) const {
    return "--cert " + shell_quote(e.device.chain) + " --key " + shell_quote(e.device.key) + " " +
           enroll_body_args(e.csr) + " " + shell_quote(server.url("/.well-known/est/simpleenroll"));
  }

  // Starts one background curl per (enrollee, server) pair at once; returns the shell command's
  // process so the caller can act while they run. Answers are read with collect().
  std::string burst_script(const std::vector<std::pair<const Enrollee*, const ServeProcess*>>& requests,
                           const std::string& tag) const {
    std::string script = "cd " + shell_quote(dir()) + "\n";
    for (std::size_t i = 0; i < requests.size(); ++i) {
      const auto out = fmt::format("{}-{}", tag, i);
      script += "curl -sS --max-time 60 --cacert " + shell_quote(home() + "/ca/root/cert.pem") + " -o " +
                out + ".body -w '%{http_code}' " + enroll_args(*requests[i].first, *requests[i].second) +
                " > " + out + ".status 2>/dev/null &\n";
    }
    script += "wait\n";
    const auto path = dir() + "/" + tag + ".sh";
    spit(path, script);
    return path;
  }

  std::vector<Answer> collect(std::size_t n, const std::string& tag) const {
    std::vector<Answer> out(n);
    for (std::size_t i = 0; i < n; ++i) {
      const auto base = fmt::format("{}/{}-{}", dir(), tag, i);
      const auto status = slurp(base + ".status");
      out[i].status = status.size() >= 3 ? std::atoi(status.substr(status.size() - 3).c_str()) : 0;
      out[i].body = slurp(base + ".body");
    }
    return out;
  }

  Http enroll(const Enrollee& e, const ServeProcess& server) const {
    return curl(home(), dir(), enroll_args(e, server));
  }

  std::vector<store::CertificateRecord> certificates_of(const Device& d) const {
    store::CertificateFilter f;
    f.device_id = d.id;
    f.issuer_ca = "idc";  // the BC, revoked after issuance, is recorded too
    auto list = store_->list_certificates(f);
    EXPECT_TRUE(list) << list.error().detail;
    return list ? *list : std::vector<store::CertificateRecord>{};
  }

  // IDCs in the database (a BC revoked after issuance may be recorded too).
  std::size_t certificate_count() const {
    store::CertificateFilter f;
    f.issuer_ca = "idc";
    auto list = store_->list_certificates(f);
    return list ? list->size() : 0;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<store::Store> store_;
  std::string db_;
  std::vector<std::unique_ptr<ServeProcess>> servers_;
};

TEST_F(Fleet, SigkillDuringABurstLosesNoIssuedCertificateAndRetriesGetTheSameIdc) {
  init_home("");
  constexpr int kDevices = 30;
  auto devices = enrollees(kDevices);
  auto& server = start_server();
  ASSERT_FALSE(HasFatalFailure());
  std::vector<std::pair<const Enrollee*, const ServeProcess*>> requests;
  for (const auto& e : devices) requests.emplace_back(&e, &server);
  const auto script = burst_script(requests, "burst");

  Child clients;
  ASSERT_TRUE(clients.start("/bin/sh", {script}, dir() + "/burst.log"));
  // Kill the server as soon as the first enrollments are committed: the rest are in flight.
  for (int i = 0; i < 3000 && certificate_count() < 12; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  servers_.back()->kill();
  const auto committed_at_kill = certificate_count();
  while (clients.running()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto answers = collect(devices.size(), "burst");

  // Every certificate a client received is in the database, with the same serial and bytes.
  std::map<std::string, std::string> received;  // unique id -> serial
  for (std::size_t i = 0; i < devices.size(); ++i) {
    if (answers[i].status != 200) continue;
    const auto idc = first_cert_of(dir(), answers[i].body);
    received[devices[i].device.unique_id] = idc.serial_hex();
    const auto stored = certificates_of(devices[i].device);
    ASSERT_EQ(stored.size(), 1u) << devices[i].device.unique_id;
    EXPECT_EQ(stored[0].serial_hex, idc.serial_hex());
    EXPECT_EQ(stored[0].der, idc.to_der());
  }
  const auto answered = received.size();
  std::printf(
      "durability: %zu of %d clients answered before SIGKILL, %zu certificates committed at the kill, "
      "%zu after\n",
      answered, kDevices, committed_at_kill, certificate_count());
  // The kill happened during the burst: not every client can have been answered.
  EXPECT_LT(answered, static_cast<std::size_t>(kDevices)) << "the burst ended before the kill";

  // What the database held before the retries (committed, answered or not).
  std::map<std::string, std::string> before;
  for (const auto& e : devices) {
    const auto stored = certificates_of(e.device);
    ASSERT_LE(stored.size(), 1u);
    if (!stored.empty()) before[e.device.unique_id] = stored[0].serial_hex;
  }

  // Restart; every client retries with the same key and CSR and gets its IDC: the same one when it
  // had been issued (answered or not).
  auto& again = start_server();
  ASSERT_FALSE(HasFatalFailure());
  std::size_t lost_answers_recovered = 0;
  for (const auto& e : devices) {
    const auto h = enroll(e, again);
    ASSERT_EQ(h.status, 200) << e.device.unique_id << " " << h.body << again.log();
    const auto idc = first_cert_of(dir(), h.body);
    EXPECT_EQ(idc.public_key(), crypto::load_private_key(e.key)->public_key());
    if (auto it = received.find(e.device.unique_id); it != received.end()) {
      EXPECT_EQ(idc.serial_hex(), it->second);
    }
    if (auto it = before.find(e.device.unique_id); it != before.end()) {
      EXPECT_EQ(idc.serial_hex(), it->second);
      lost_answers_recovered += received.contains(e.device.unique_id) ? 0 : 1;
    }
    const auto stored = certificates_of(e.device);
    ASSERT_EQ(stored.size(), 1u);
    EXPECT_EQ(stored[0].serial_hex, idc.serial_hex());
  }
  std::printf("durability: %zu committed-but-unanswered enrollments returned the same IDC on retry\n",
              lost_answers_recovered);
  EXPECT_EQ(certificate_count(), static_cast<std::size_t>(kDevices));
}

class FleetPg : public Fleet {
 protected:
  void SetUp() override {
    Fleet::SetUp();
    std::string error;
    pg_ = test::PgServer::start(&error, HALLMARK_BINARY_DIR);
    if (!pg_) GTEST_SKIP() << "PostgreSQL: " << error;
    ASSERT_EQ(pg_->fresh_database("hallmark_fleet"), "");
    init_home(pg_->url("hallmark_fleet"));
  }
  void TearDown() override {
    Fleet::TearDown();
    pg_.reset();
  }
  std::unique_ptr<test::PgServer> pg_;
};

TEST_F(FleetPg, TwoServersOnOneDatabaseNeverIssueTwoIdcsToOneDevice) {
  constexpr int kDevices = 20;
  auto devices = enrollees(kDevices);
  auto& a = start_server();
  ASSERT_FALSE(HasFatalFailure());
  auto& b = start_server();
  ASSERT_FALSE(HasFatalFailure());

  // Every device sends its request to both servers at the same moment.
  std::vector<std::pair<const Enrollee*, const ServeProcess*>> requests;
  for (const auto& e : devices) {
    requests.emplace_back(&e, &a);
    requests.emplace_back(&e, &b);
  }
  const auto script = burst_script(requests, "both");
  const auto r = run("/bin/sh " + shell_quote(script));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto answers = collect(requests.size(), "both");

  std::map<int, int> statuses;
  for (std::size_t i = 0; i < devices.size(); ++i) {
    std::set<std::string> serials;
    for (std::size_t k : {2 * i, 2 * i + 1}) {
      ++statuses[answers[k].status];
      if (answers[k].status == 200) {
        serials.insert(first_cert_of(dir(), answers[k].body).serial_hex());
      } else {
        // A race lost on the end entity is a 409 the device retries; nothing else is acceptable.
        EXPECT_EQ(answers[k].status, 409) << answers[k].body;
        EXPECT_NE(answers[k].body.find("\"code\":\"end-entity-not-issuable\""), std::string::npos)
            << answers[k].body;
      }
    }
    EXPECT_LE(serials.size(), 1u) << devices[i].device.unique_id << " got two different IDCs";
    // The device retries on the other server (and the first): the same IDC each time.
    for (const auto* server : {&b, &a}) {
      const auto h = enroll(devices[i], *server);
      ASSERT_EQ(h.status, 200) << h.body;
      serials.insert(first_cert_of(dir(), h.body).serial_hex());
    }
    EXPECT_EQ(serials.size(), 1u) << devices[i].device.unique_id << " got two different IDCs";
    const auto stored = certificates_of(devices[i].device);
    ASSERT_EQ(stored.size(), 1u) << devices[i].device.unique_id;
    EXPECT_EQ(stored[0].status, store::CertificateStatus::good);
    EXPECT_EQ(stored[0].serial_hex, *serials.begin());
  }
  std::string figures;
  for (const auto& [status, count] : statuses) figures += fmt::format(" {}x{}", count, status);
  std::printf("scale-out: %d devices x 2 servers at once, answers:%s\n", kDevices, figures.c_str());
  EXPECT_EQ(certificate_count(), static_cast<std::size_t>(kDevices));
  // Both servers did serve.
  EXPECT_NE(a.log().find("status=200"), std::string::npos);
  EXPECT_NE(b.log().find("status=200"), std::string::npos);
}

TEST_F(FleetPg, StoreDownIs503WithRetryAfterThenTheServerReconnects) {
  auto devices = enrollees(2);
  auto& server = start_server();
  ASSERT_FALSE(HasFatalFailure());
  auto first = enroll(devices[0], server);
  ASSERT_EQ(first.status, 200) << first.body;

  store_.reset();  // the test's own connections
  ASSERT_TRUE(pg_->stop_server());
  const auto down = enroll(devices[1], server);
  EXPECT_EQ(down.status, 503) << down.body << server.log();
  EXPECT_EQ(header_value(down.headers, "Content-Type"), "application/problem+json") << down.headers;
  EXPECT_FALSE(header_value(down.headers, "Retry-After").empty()) << down.headers;
  EXPECT_NE(down.body.find("\"code\":\"store-unavailable\""), std::string::npos) << down.body;
  // Public operations that need no store still answer, and the server is alive.
  const auto cacerts = curl(home(), dir(), shell_quote(server.url("/.well-known/est/cacerts")));
  EXPECT_EQ(cacerts.status, 200);
  ASSERT_TRUE(server.running()) << server.log();

  ASSERT_TRUE(pg_->start_server());
  int attempts = 0;
  Http up;
  do {
    if (attempts > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    up = enroll(devices[1], server);
    ++attempts;
  } while (up.status != 200 && attempts < 20);
  ASSERT_EQ(up.status, 200) << up.body << server.log();
  std::printf("store-down: enrolled on attempt %d after PostgreSQL restarted\n", attempts);
  EXPECT_LE(attempts, 2) << "the server should reconnect on its first or second use";
  auto s = store::open_store(db_);
  ASSERT_TRUE(s);
  store_ = std::move(*s);
  const auto stored = certificates_of(devices[1].device);
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].serial_hex, first_cert_of(dir(), up.body).serial_hex());
  // The same answer once more: the 503 left nothing half-done.
  const auto again = enroll(devices[1], server);
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(first_cert_of(dir(), again.body).serial_hex(), stored[0].serial_hex);
}

}  // namespace
}  // namespace hallmark

// Revocation while a fleet runs: the real `hallmark serve`, the vendor station, a reel imported and
// mounted with the real `hallmark` CLI, a fleet of devices enrolling and re-enrolling with
// `hallmark-device fleet`, and a few devices of the same reel enrolled one by one with
// `hallmark-device enroll`. While the fleet's re-enrollments are in flight, `hallmark cert revoke`
// revokes some of those devices' IDCs: their re-enrollment is refused with the server's problem code
// and nothing new is issued to them, while the fleet and the other devices re-enroll as before.
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "hallmark/ra/registrar.hpp"
#include "hallmark/x509/certificate.hpp"
#include "serve_harness.hpp"

namespace hallmark {
namespace {

namespace fs = std::filesystem;
using namespace hallmark::testing;

// Devices enrolled one by one (the first kRevoked of them are revoked), then the fleet's.
constexpr std::size_t kSingles = 6;
constexpr std::size_t kRevoked = 2;
constexpr std::size_t kFleet = 40;

class RevocationFleet : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>("hallmark-revocation-fleet");
    const auto must = [](const std::string& command) {
      const auto r = run(command + " 2>&1");
      ASSERT_EQ(r.exit_code, 0) << command << "\n" << r.output;
    };
    init_home(home(), server_config(1, 2) + default_alias_config("option2", "vendor-bc"));
    ASSERT_FALSE(HasFatalFailure());
    const std::string vendor =
        std::string(HALLMARK_CLI) + " vendor --vendor-home " + shell_quote(tmp("vendor"));
    must(vendor + " init --org 'Example Silicon'");
    must(vendor + " request-subca --role bc --oem 'Acme Devices' --out " + shell_quote(tmp("bc.csr")));
    must(cli("ca sign-subca --csr " + shell_quote(tmp("bc.csr")) + " --role bc --name vendor-bc --out " +
             shell_quote(tmp("bc-chain.pem"))));
    must(vendor + " install-subca --role bc --chain " + shell_quote(tmp("bc-chain.pem")));
    must(vendor + " provision --mode bc --count " + std::to_string(kSingles + kFleet) +
         " --part-number ATECC608B-TFLXTLS --reel RF --out " + shell_quote(tmp("reels")));
    fs::create_directories(tmp("signers"));
    fs::create_directories(tmp("roots"));
    fs::copy_file(tmp("vendor") + "/signer/cert.pem", tmp("signers") + "/vendor.pem");
    fs::copy_file(root(), tmp("roots") + "/oem.pem");
    must(cli("manifest import " + shell_quote(tmp("reels") + "/RF.json") + " --signers " +
             shell_quote(tmp("signers")) + " --vendor-roots " + shell_quote(tmp("roots"))));
    if (HasFatalFailure()) return;
    std::string csv = "unique_id,station\n";
    for (const auto& e : nlohmann::json::parse(slurp(tmp("reels") + "/RF.json"))) {
      chips_.push_back(e["header"]["uniqueId"].get<std::string>());
      csv += chips_.back() + ",line-1\n";
    }
    ASSERT_EQ(chips_.size(), kSingles + kFleet);
    spit(tmp("mount.csv"), csv);
    must(cli("device mount --from-csv " + shell_quote(tmp("mount.csv")) + " --station line-1"));
    // The fleet plays its own reel directory: the chips after the single devices'.
    fs::create_directories(tmp("fleet-reel"));
    for (std::size_t i = kSingles; i < chips_.size(); ++i)
      fs::copy_file(chip(i), tmp("fleet-reel") + "/" + chips_[i] + ".json");
    store_ = open_migrated_store("sqlite:" + home() + "/hallmark.db");
    ASSERT_NE(store_, nullptr);
    start_serve(serve_, home(), dir());
  }

  void TearDown() override {
    serve_.stop();
    store_.reset();
    dir_.reset();
  }

  std::string home() const { return (dir_->path() / "home").string(); }
  std::string tmp(const std::string& name) const { return (dir_->path() / name).string(); }
  std::string dir() const { return dir_->path().string(); }
  std::string root() const { return home() + "/ca/root/cert.pem"; }
  std::string chip(std::size_t i) const { return tmp("reels") + "/chips/" + chips_.at(i) + ".json"; }
  std::string state(std::size_t i) const { return tmp("devices") + "/" + chips_.at(i); }
  std::string est_url() const { return serve_.url("/.well-known/est/option2"); }
  std::string cli(const std::string& args) const {
    return std::string(HALLMARK_CLI) + " --home " + shell_quote(home()) + " " + args;
  }

  CommandResult enroll(std::size_t i) const {
    return run(std::string(HALLMARK_DEVICE_CLI) + " enroll --chip " + shell_quote(chip(i)) + " --trust " +
               shell_quote(root()) + " --server " + est_url() + " --dir " + shell_quote(state(i)) +
               " --max-wait 30s 2>&1");
  }
  CommandResult reenroll(std::size_t i) const {
    return run(std::string(HALLMARK_DEVICE_CLI) + " reenroll --dir " + shell_quote(state(i)) +
               " --max-wait 30s 2>&1");
  }
  x509::Certificate current_idc(std::size_t i) const {
    auto c = x509::Certificate::load(state(i) + "/current/idc.pem");
    EXPECT_TRUE(c) << c.error().detail;
    return c ? *c : x509::Certificate{};
  }
  // The certificates the store holds for chip i's device, oldest first.
  std::vector<store::CertificateRecord> certificates_of(std::size_t i) const {
    auto device = store_->find_device_by_unique_id(chips_.at(i));
    EXPECT_TRUE(device) << chips_.at(i);
    if (!device) return {};
    auto certs = store_->list_certificates({.device_id = device->id, .limit = 100});
    EXPECT_TRUE(certs);
    return certs ? *certs : std::vector<store::CertificateRecord>{};
  }
  std::size_t certificates_in_store() const {
    std::size_t n = 0;
    store::CertificateFilter f;
    f.limit = 1000;
    for (;;) {
      auto page = store_->list_certificates(f);
      EXPECT_TRUE(page);
      if (!page || page->empty()) return n;
      n += page->size();
      f.after_id = page->back().id;
    }
  }

  // The revoked device's re-enrollment is refused with the server's problem code; its credentials
  // are kept and the store issued it nothing new (its one IDC, revoked).
  void expect_refused(std::size_t i, const std::string& serial) {
    const auto r = reenroll(i);
    EXPECT_EQ(r.exit_code, 5) << r.output;
    EXPECT_TRUE(contains(r.output, ra::problem::kIdcRevoked)) << r.output;
    EXPECT_EQ(current_idc(i).serial_hex(), serial);
    const auto certs = certificates_of(i);
    ASSERT_EQ(certs.size(), 1u);
    EXPECT_EQ(certs[0].serial_hex, serial);
    EXPECT_EQ(certs[0].status, store::CertificateStatus::revoked);
    EXPECT_EQ(certs[0].reason, static_cast<int>(x509::RevocationReason::key_compromise));
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<store::Store> store_;
  ServeProcess serve_;
  std::vector<std::string> chips_;
};

TEST_F(RevocationFleet, RevokedDevicesCannotReenrollWhileTheFleetIsUnaffected) {
  if (HasFatalFailure()) return;
  // The single devices enroll first: each holds one good IDC.
  std::vector<std::string> serials;
  for (std::size_t i = 0; i < kSingles; ++i) {
    const auto r = enroll(i);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    serials.push_back(current_idc(i).serial_hex());
    ASSERT_EQ(certificates_of(i).size(), 1u);
  }
  const auto before_fleet = certificates_in_store();

  // The fleet: every device enrolls, then re-enrolls with its new IDC, a few at a time.
  Child fleet;
  const auto fleet_log = tmp("fleet.log");
  ASSERT_TRUE(fleet.start(
      HALLMARK_DEVICE_CLI,
      {"fleet", "--reel", tmp("fleet-reel"), "--trust", root(), "--server", est_url(), "--count",
       std::to_string(kFleet), "--concurrency", "4", "--reenroll-fraction", "1", "--progress", "never"},
      fleet_log));
  // Revoked once the fleet is issuing (its first IDC is in the store): not a guess at timing, a
  // condition; the assertions below hold whether or not the fleet is still running by then.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (certificates_in_store() == before_fleet && fleet.running() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (std::size_t i = 0; i < kRevoked; ++i) {
    const auto r = run(cli("cert revoke --serial " + serials[i] + " --reason keyCompromise 2>&1"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const bool revoked_during_fleet = fleet.running();
  // Right after the revocation (durable before `cert revoke` returned), with the fleet likely still
  // re-enrolling: the revoked devices are refused, the other single devices re-enroll.
  for (std::size_t i = 0; i < kRevoked; ++i) expect_refused(i, serials[i]);
  for (std::size_t i = kRevoked; i < kSingles; ++i) {
    const auto r = reenroll(i);
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }

  const int fleet_exit = fleet.wait();
  const auto report = slurp(fleet_log);
  EXPECT_EQ(fleet_exit, 0) << report;
  EXPECT_TRUE(contains(report, "devices " + std::to_string(kFleet) + "  enrolled " + std::to_string(kFleet) +
                                   "  re-enrolled " + std::to_string(kFleet) + "  failed 0"))
      << report;
  RecordProperty("revoked_during_fleet", revoked_during_fleet ? "yes" : "no");

  // Afterwards, certainly past the revocation: still refused, still nothing new for them.
  for (std::size_t i = 0; i < kRevoked; ++i) expect_refused(i, serials[i]);
  // The other single devices hold a new good IDC, their first one untouched by the revocation.
  for (std::size_t i = kRevoked; i < kSingles; ++i) {
    const auto idc = current_idc(i);
    EXPECT_NE(idc.serial_hex(), serials[i]);
    const auto certs = certificates_of(i);
    ASSERT_EQ(certs.size(), 2u);
    for (const auto& c : certs) EXPECT_EQ(c.status, store::CertificateStatus::good) << c.serial_hex;
    EXPECT_EQ(certs.back().serial_hex, idc.serial_hex());
  }
  // Every fleet device: enrolled and re-enrolled, two good IDCs, none revoked.
  for (std::size_t i = kSingles; i < chips_.size(); ++i) {
    const auto certs = certificates_of(i);
    EXPECT_EQ(certs.size(), 2u) << chips_[i];
    for (const auto& c : certs) EXPECT_EQ(c.status, store::CertificateStatus::good) << c.serial_hex;
  }
  // The server refused exactly the revoked devices' re-enrollments, each audited as refused.
  std::size_t refused = 0, audited = 0;
  for (store::Id after = 0;;) {
    auto page = store_->list_audit(after, 1000);
    ASSERT_TRUE(page);
    if (page->empty()) break;
    for (const auto& a : *page) {
      if (a.event.outcome == store::Outcome::refused && a.event.reason.starts_with(ra::problem::kIdcRevoked))
        ++refused;
    }
    audited += page->size();
    after = page->back().id;
  }
  EXPECT_GT(audited, 0u);
  EXPECT_EQ(refused, 2 * kRevoked);
}

}  // namespace
}  // namespace hallmark

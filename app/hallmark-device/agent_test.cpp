// hallmark-device against the real server: the PKI home, the vendor station, the reels and the
// inventory are made with the real `hallmark` CLI (as scripts/demo does), then `hallmark serve` runs
// on 127.0.0.1 port 0 and the agent enrolls, re-enrolls, renews and recovers devices from the reels'
// chip images. A second server (another PKI, the first one's TLS certificate) answers cacerts from a
// root the devices do not trust. The AgentRoute suite runs the enroll, re-enroll and renew flows
// straight to the server and through nginx in front of it (`hallmark proxy nginx-config`), with file
// keys and with keys in a SoftHSM2 token; a misbehaving EST server (rogue_est_server.hpp) gives the
// agent answers it must refuse.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <thread>
#include <tuple>

#include "hallmark/core/bytes.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/device/agent.hpp"
#include "hallmark/device/fleet.hpp"
#include "hallmark/x509/certificate.hpp"
#include "nginx_process.hpp"
#include "process.hpp"
#include "rogue_est_server.hpp"
#include "serve_process.hpp"

namespace hallmark {
namespace {

namespace fs = std::filesystem;
using testing::run;
using testing::shell_quote;

using testing::ServeProcess;
using testing::slurp;

// The EST base URL of `server`, with the alias when given.
std::string est_url(const ServeProcess& server, const std::string& alias = "") {
  return server.url("/.well-known/est" + (alias.empty() ? "" : "/" + alias));
}

// Starts `server` on `home`, its files in `dir` (a fatal failure if it does not come up).
void start_server(ServeProcess& server, const std::string& home, const std::string& dir) {
  const auto error = server.start(home, dir);
  ASSERT_TRUE(error.empty()) << error;
}

class Agent : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("hallmark-agent");
    const auto w = dir_->path().string();
    const auto must = [](const std::string& cmd) {
      const auto r = run(cmd);
      ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
    };
    must(oem() + " init --org 'Acme Devices' --product 'Acme Widget'");
    must(vendor() + " init --org 'Example Silicon' --generic-bc-ca");
    must(vendor() + " request-subca --role bc --oem 'Acme Devices' --out " + w + "/bc.csr");
    must(oem() + " ca sign-subca --csr " + w + "/bc.csr --role bc --name vendor-bc --out " + w +
         "/bc-chain.pem");
    must(vendor() + " install-subca --role bc --chain " + w + "/bc-chain.pem");
    must(oem() + " ca import-external " + w +
         "/vendor/generic-bc/root-cert.pem --name vendor-generic-bc-root --role bc");
    // R2: chips 0-19 for the Agent tests, 20-39 for the fleet, 40-55 for AgentRoute, 56-71 for the
    // misbehaving server.
    must(vendor() + " provision --mode bc --count 72 --part-number ATECC608B-TFLXTLS --reel R2 --out " + w +
         "/reels");
    must(vendor() + " provision --mode bc-secret --count 4 --part-number ATECC608B-TNGTLS --reel R3 --out " +
         w + "/reels");
    fs::create_directories(w + "/signers");
    fs::create_directories(w + "/roots");
    fs::copy_file(w + "/vendor/signer/cert.pem", w + "/signers/vendor.pem");
    fs::copy_file(w + "/oem/ca/root/cert.pem", w + "/roots/oem.pem");
    fs::copy_file(w + "/vendor/generic-bc/root-cert.pem", w + "/roots/vendor.pem");
    must(oem() + " manifest import " + w + "/reels/R2.json " + w + "/reels/R3.json --signers " + w +
         "/signers --vendor-roots " + w + "/roots");
    // Every chip is mounted but the first of R2, which the UKID test mounts by the agent's UKID.
    std::string csv = "unique_id,station\n";
    for (const char* reel : {"R2", "R3"}) {
      const auto j = nlohmann::json::parse(slurp(w + "/reels/" + reel + ".json"));
      for (const auto& e : j) {
        const auto id = e["header"]["uniqueId"].get<std::string>();
        (reel == std::string("R2") ? r2_ : r3_).push_back(id);
      }
    }
    for (std::size_t i = 1; i < r2_.size(); ++i) csv += r2_[i] + ",line-1\n";
    for (const auto& id : r3_) csv += id + ",line-1\n";
    ASSERT_TRUE(write_file_atomic(w + "/mount.csv", as_bytes(csv)));
    must(oem() + " device mount --from-csv " + w + "/mount.csv --station line-1");

    std::ofstream(home() + "/hallmark.toml", std::ios::app)
        << testing::server_config(1, 2) << testing::default_alias_config("option2", "vendor-bc") << R"(
[est.alias.option3]
ca = "idc"
authenticators = ["bc-secret"]
enroll_anchors = ["vendor-generic-bc-root"]
after_issue = "consume-bc"

[est.alias.short]           # IDCs of a few minutes, re-enrollment always in its window
ca = "idc"
enroll_anchors = ["vendor-bc"]
lifetime = "2m"
renewal_window = "1h"

[est.alias.long]            # IDCs of an hour; re-enrollment only in the last 10 minutes
ca = "idc"
enroll_anchors = ["vendor-bc"]
lifetime = "1h"
renewal_window = "10m"

[est.alias.grace]           # IDCs of seconds, re-enrollment an hour past expiry
ca = "idc"
enroll_anchors = ["vendor-bc"]
lifetime = "3s"
grace_period = "1h"

[est.alias.recover]         # past the grace period the BC may enroll again
ca = "idc"
enroll_anchors = ["vendor-bc"]
lifetime = "2s"
grace_period = "1s"
recovery_through_bc = true

[est.alias.pop]             # the CSR must carry the TLS channel binding (RFC 9266 on TLS 1.3)
ca = "idc"
enroll_anchors = ["vendor-bc"]
pop_linking = "required"

[est.alias.norecover]
ca = "idc"
enroll_anchors = ["vendor-bc"]
lifetime = "2s"
grace_period = "1s"
)";
    // nginx's client certificate towards the server (AgentRoute puts nginx in front of it).
    must(oem() + " proxy issue-cert");
    std::ofstream(home() + "/hallmark.toml", std::ios::app)
        << "\n[server.proxy]\ntrusted_cas = [\"proxy\"]\n";
    fs::create_directories(w + "/srv-a");
    start_server(server_, home(), w + "/srv-a");

    // The other PKI: its own root and IDC CA, but the first home's TLS certificate, and the first
    // home's root as an external BC anchor so the devices' BCs pass its TLS layer.
    must(HALLMARK_CLI " --home " + w + "/other init --org 'Other' --product 'Other'");
    must(HALLMARK_CLI " --home " + w + "/other ca import-external " + w +
         "/oem/ca/root/cert.pem --name acme-root --role bc");
    std::ofstream(w + "/other/hallmark.toml", std::ios::app)
        << testing::server_config(1, 1) << "tls_cert = \"" << home() << "/tls/server.pem\"\ntls_key = \""
        << home() << "/tls/server.key\"\ntls_key_passphrase = \"file:" << home()
        << "/secrets/ca-passphrase\"\n\n[est.alias.rogue]\nca = \"idc\"\nenroll_anchors = [\"acme-root\"]\n";
    fs::create_directories(w + "/srv-b");
    start_server(other_, w + "/other", w + "/srv-b");
  }

  static void TearDownTestSuite() {
    server_.stop();
    other_.stop();
    delete dir_;
    dir_ = nullptr;
    r2_.clear();
    r3_.clear();
  }

  static std::string w() { return dir_->path().string(); }
  static std::string home() { return w() + "/oem"; }
  static std::string oem() { return std::string(HALLMARK_CLI) + " --home " + shell_quote(w() + "/oem"); }
  static std::string vendor() {
    return std::string(HALLMARK_CLI) + " vendor --vendor-home " + shell_quote(w() + "/vendor");
  }
  static std::string agent() { return HALLMARK_DEVICE_CLI; }
  static std::string root() { return home() + "/ca/root/cert.pem"; }
  static std::string chip(std::size_t i) { return w() + "/reels/chips/" + r2_.at(i) + ".json"; }
  static std::string secret_chip(std::size_t i) { return w() + "/reels/chips/" + r3_.at(i) + ".json"; }
  static std::string state(const std::string& name) { return w() + "/devices/" + name; }

  static testing::CommandResult enroll(const std::string& chip_path, const std::string& name,
                                       const std::string& alias, const std::string& extra = "") {
    return run(agent() + " enroll --chip " + shell_quote(chip_path) + " --trust " + shell_quote(root()) +
               " --server " + est_url(server_, alias) + " --dir " + shell_quote(state(name)) +
               " --max-wait 5s " + extra);
  }
  static x509::Certificate current_idc(const std::string& name) {
    auto c = x509::Certificate::load(state(name) + "/current/idc.pem");
    EXPECT_TRUE(c) << c.error().detail;
    return c ? *c : x509::Certificate{};
  }
  // The IDC verifies with openssl against the OEM root, and carries the key beside it (a 0600 file,
  // or the URI of a key in the token, read with the PIN in DEVICE_PIN).
  static void expect_valid_credentials(const std::string& name) {
    const auto cur = state(name) + "/current";
    const auto v = run("openssl verify -CAfile " + shell_quote(root()) + " -untrusted " +
                       shell_quote(cur + "/cacerts.pem") + " " + shell_quote(cur + "/idc.pem"));
    EXPECT_EQ(v.exit_code, 0) << v.output;
    if (fs::exists(cur + "/key.uri")) {
      EXPECT_FALSE(fs::exists(cur + "/key.pem"));
      const auto uri = slurp(cur + "/key.uri");
      auto key = device::load_key(uri.substr(0, uri.find('\n')), "env:DEVICE_PIN");
      ASSERT_TRUE(key) << key.error().detail;
      EXPECT_TRUE((*key)->public_key() == current_idc(name).public_key());
      return;
    }
    struct stat st {};
    ASSERT_EQ(::stat((cur + "/key.pem").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto key = crypto::load_private_key(cur + "/key.pem");
    ASSERT_TRUE(key);
    EXPECT_TRUE(key->public_key() == current_idc(name).public_key());
  }
  static std::size_t certificates_issued_for(const std::string& ukid_or_serial) {
    const auto r = run(oem() + " cert list --limit 100000");
    std::size_t n = 0;
    for (std::size_t pos = 0; (pos = r.output.find(ukid_or_serial, pos)) != std::string::npos; ++pos) ++n;
    return n;
  }

  static testing::TempDir* dir_;
  static ServeProcess server_;
  static ServeProcess other_;
  static std::vector<std::string> r2_;
  static std::vector<std::string> r3_;
};

testing::TempDir* Agent::dir_ = nullptr;
ServeProcess Agent::server_;
ServeProcess Agent::other_;
std::vector<std::string> Agent::r2_;
std::vector<std::string> Agent::r3_;

TEST_F(Agent, UkidIsTheOneTheRaComputes) {
  auto image = device::ChipImage::load(chip(0));
  ASSERT_TRUE(image) << image.error().detail;
  const auto bc = w() + "/ukid-bc.pem";
  ASSERT_TRUE(write_file_atomic(bc, as_bytes(image->chain.front().to_pem())));
  const auto r = run(agent() + " ukid --bc " + shell_quote(bc));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string ukid = r.output.substr(0, r.output.find('\n'));
  ASSERT_EQ(ukid.size(), 64u);
  // openssl's view: SHA-256 over the DER SubjectPublicKeyInfo.
  const auto o =
      run("openssl x509 -in " + shell_quote(bc) +
          " -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1");
  EXPECT_EQ(o.output.substr(0, 64), ukid);
  // The inventory finds the chip by it (mount --ukid), and the RA accepts it in the CSR.
  const auto m = run(oem() + " device mount --ukid " + ukid + " --station line-1");
  ASSERT_EQ(m.exit_code, 0) << m.output;
  const auto e = enroll(chip(0), "ukid", "option2");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_EQ(current_idc("ukid").subject().get("serialNumber"), ukid);
  // A bad file is a clear error.
  const auto bad = run(agent() + " ukid --bc " + shell_quote(root() + ".missing"));
  EXPECT_EQ(bad.exit_code, 3) << bad.output;
  EXPECT_NE(bad.output.find("hallmark-device: error:"), std::string::npos);
}

TEST_F(Agent, EnrollsOption2FromAChipImage) {
  const auto r = enroll(chip(1), "opt2", "option2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("enrolled: "), std::string::npos);
  expect_valid_credentials("opt2");
  const auto idc = current_idc("opt2");
  EXPECT_EQ(idc.subject().get("CN"), "Acme Widget");
  EXPECT_EQ(certificates_issued_for(idc.serial_hex()), 1u);
  // The BC was revoked by the issuance: enrolling again with a new key is refused, the IDC kept.
  fs::remove_all(state("opt2-again"));
  fs::create_directories(state("opt2-again"));
  const auto again = enroll(chip(1), "opt2-again", "option2");
  EXPECT_EQ(again.exit_code, 5) << again.output;
  EXPECT_NE(again.output.find("bc-revoked"), std::string::npos) << again.output;
  EXPECT_EQ(current_idc("opt2"), idc);
  // Enrolling into a directory that holds an IDC is refused before anything is sent.
  const auto twice = enroll(chip(1), "opt2", "option2");
  EXPECT_EQ(twice.exit_code, 4) << twice.output;
  EXPECT_NE(twice.output.find("already holds an IDC"), std::string::npos) << twice.output;
  EXPECT_EQ(current_idc("opt2"), idc);

  const auto st = run(agent() + " status --dir " + shell_quote(state("opt2")));
  EXPECT_EQ(st.exit_code, 0) << st.output;
  EXPECT_NE(st.output.find("verifies  yes"), std::string::npos) << st.output;
  EXPECT_NE(st.output.find("never (no expiry)"), std::string::npos) << st.output;
}

TEST_F(Agent, EnrollsOption3WithTheSecretInChallengePassword) {
  const auto r = enroll(secret_chip(0), "opt3", "option3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_valid_credentials("opt3");
  // The secret file is kept for recovery, 0600, and never printed.
  struct stat st {};
  ASSERT_EQ(::stat((state("opt3") + "/ukid-secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const auto image = device::ChipImage::load(secret_chip(0));
  ASSERT_TRUE(image);
  EXPECT_EQ(r.output.find(std::string(image->ukid_secret->reveal())), std::string::npos);
  EXPECT_EQ(server_.log().find(std::string(image->ukid_secret->reveal())), std::string::npos);

  // The wrong secret is refused with the server's problem code.
  const auto wrong = w() + "/wrong-secret";
  ASSERT_TRUE(write_file_atomic(wrong, as_bytes("00000000000000000000000000000000\n")));
  const auto bad = enroll(secret_chip(1), "opt3-wrong", "option3", "--secret-source file:" + wrong);
  EXPECT_EQ(bad.exit_code, 5) << bad.output;
  EXPECT_NE(bad.output.find("secret-mismatch"), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(state("opt3-wrong") + "/current"));
}

TEST_F(Agent, LinksItsCsrToTheTlsChannelWhenTheAliasRequiresIt) {
  const auto without = enroll(chip(65), "pop-missing", "pop");
  EXPECT_EQ(without.exit_code, 5) << without.output;
  EXPECT_NE(without.output.find("pop-linking-missing"), std::string::npos) << without.output;
  EXPECT_FALSE(fs::exists(state("pop-missing") + "/current"));
  const auto with = enroll(chip(66), "pop", "pop", "--pop-linking");
  ASSERT_EQ(with.exit_code, 0) << with.output;
  expect_valid_credentials("pop");
}

TEST_F(Agent, RefusesAServerThatDoesNotChainToTheAnchor) {
  const auto other_root = w() + "/other/ca/root/cert.pem";
  const auto r = run(agent() + " enroll --chip " + shell_quote(chip(2)) + " --trust " +
                     shell_quote(other_root) + " --server " + est_url(server_, "option2") + " --dir " +
                     shell_quote(state("untrusted")) + " --max-wait 1s");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("does not verify against the trust anchor"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(state("untrusted") + "/current"));
}

TEST_F(Agent, RefusesCacertsFromAnotherRoot) {
  // Same TLS certificate as the real server (so TLS verifies), but cacerts from another root.
  const auto r = run(agent() + " enroll --chip " + shell_quote(chip(3)) + " --trust " + shell_quote(root()) +
                     " --server " + est_url(other_, "rogue") + " --dir " + shell_quote(state("rogue")) +
                     " --max-wait 1s");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("does not chain to the trust anchor"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(state("rogue") + "/current"));
  // Nothing was requested from that server: no certificate there.
  const auto list = run(std::string(HALLMARK_CLI) + " --home " + shell_quote(w() + "/other") + " cert list");
  EXPECT_EQ(list.output.find("Acme Widget"), std::string::npos) << list.output;
}

TEST_F(Agent, ARetryWithThePendingKeyGetsTheSameIdc) {
  // The answer to the first request is "lost": the device kept its pending key (written before the
  // request) but not the IDC. Retrying, even after the BC was revoked by that issuance, sends the
  // same key and gets the same certificate back; nothing new is issued.
  ASSERT_EQ(enroll(chip(12), "lost", "option2").exit_code, 0);
  const auto idc = current_idc("lost");
  fs::create_directories(state("lost-retry"));
  fs::copy_file(state("lost") + "/current/key.pem", state("lost-retry") + "/pending.key");
  const auto r = enroll(chip(12), "lost-retry", "option2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("key-resumed"), std::string::npos) << r.output;
  EXPECT_EQ(current_idc("lost-retry"), idc);
  EXPECT_FALSE(fs::exists(state("lost-retry") + "/pending.key"));
  EXPECT_EQ(certificates_issued_for(idc.serial_hex()), 1u);
}

TEST_F(Agent, GivesUpAtMaxWaitWhenTheServerIsDown) {
  // A port nothing listens on: connection refused, retried with backoff until --max-wait.
  const auto r = run(agent() + " enroll --chip " + shell_quote(chip(13)) + " --trust " + shell_quote(root()) +
                     " --server https://127.0.0.1:1/.well-known/est/option2 --dir " +
                     shell_quote(state("down")) + " --max-wait 2s");
  EXPECT_EQ(r.exit_code, 6) << r.output;
  EXPECT_NE(r.output.find("retry attempt=1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--max-wait"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(state("down") + "/current"));
  // The key it would have sent is kept for the next try.
  EXPECT_TRUE(fs::exists(state("down") + "/pending.key"));
}

TEST_F(Agent, RenewDaemonRenewsAndStopsOnSigterm) {
  ASSERT_EQ(enroll(chip(14), "daemon", "short").exit_code, 0);
  const auto first = current_idc("daemon");
  const auto log = state("daemon") + ".log";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(HALLMARK_DEVICE_CLI, "hallmark-device", "renew", "--daemon", "--dir", state("daemon").c_str(),
            nullptr);
    ::_exit(127);
  }
  bool renewed = false;
  for (int i = 0; i < 300 && !renewed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto c = x509::Certificate::load(state("daemon") + "/current/idc.pem");
    renewed = c && c->serial_hex() != first.serial_hex();
  }
  EXPECT_TRUE(renewed) << slurp(log);
  ::kill(pid, SIGTERM);
  int status = -1;
  for (int i = 0; i < 100; ++i) {
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!WIFEXITED(status)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    FAIL() << "the daemon did not stop on SIGTERM:\n" << slurp(log);
  }
  EXPECT_EQ(WEXITSTATUS(status), 0) << slurp(log);
  // This profile's backdate makes each new IDC due at once: the daemon waits instead of looping.
  EXPECT_NE(slurp(log).find("renew-due-again"), std::string::npos) << slurp(log);
  expect_valid_credentials("daemon");
}

TEST_F(Agent, ExpiredIdcReenrollsInsideTheGracePeriod) {
  ASSERT_EQ(enroll(chip(7), "grace", "grace").exit_code, 0);
  const auto first = current_idc("grace");
  while (SystemClock().now() <= first.not_after())
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto st = run(agent() + " status --dir " + shell_quote(state("grace")));
  EXPECT_EQ(st.exit_code, 5) << st.output;  // expired: does not verify now
  EXPECT_NE(st.output.find("(expired)"), std::string::npos) << st.output;
  const auto r = run(agent() + " renew --dir " + shell_quote(state("grace")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(current_idc("grace").serial_hex(), first.serial_hex());
}

TEST_F(Agent, PastTheGracePeriodRecoversThroughTheBcOnlyWhenTheAliasAllows) {
  ASSERT_EQ(enroll(chip(8), "recover", "recover").exit_code, 0);
  ASSERT_EQ(enroll(chip(9), "norecover", "norecover").exit_code, 0);
  const auto a = current_idc("recover");
  const auto b = current_idc("norecover");
  while (SystemClock().now() <= std::max(a.not_after(), b.not_after()) + std::chrono::seconds{1}) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const auto ok = run(agent() + " renew --recover --dir " + shell_quote(state("recover")));
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("idc-expired"), std::string::npos) << ok.output;  // logged, then recovered
  const auto recovered = current_idc("recover");
  EXPECT_NE(recovered.serial_hex(), a.serial_hex());
  EXPECT_TRUE(recovered.subject() == a.subject());

  const auto refused = run(agent() + " renew --recover --dir " + shell_quote(state("norecover")));
  EXPECT_EQ(refused.exit_code, 4) << refused.output;
  EXPECT_NE(refused.output.find("already-enrolled"), std::string::npos) << refused.output;
  EXPECT_EQ(current_idc("norecover"), b);
}

TEST_F(Agent, FleetOfTwentyDevicesEnrollsAndReenrolls) {
  const auto reel = w() + "/fleet-reel";
  fs::create_directories(reel);
  for (std::size_t i = 20; i < 40; ++i) fs::copy_file(chip(i), reel + "/" + r2_[i] + ".json");
  const auto r = run(agent() + " fleet --reel " + shell_quote(reel) + " --trust " + shell_quote(root()) +
                     " --server " + est_url(server_, "option2") +
                     " --count 20 --concurrency 8 --reenroll-fraction 0.25" + " --progress never");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("devices 20  enrolled 20  re-enrolled 5  failed 0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("enrollments/s"), std::string::npos);
  // The row per option: devices, enrolled, re-enrolled, its own enrollments/s, no refusals.
  std::smatch row;
  ASSERT_TRUE(
      std::regex_search(r.output, row, std::regex(R"(option 2 \(bc\)\s+20\s+20\s+5\s+([0-9.]+)\s+-\n)")))
      << r.output;
  EXPECT_GT(std::stod(row[1].str()), 0.0) << r.output;
  // Once more: every device is enrolled and its BC revoked, so each new key is refused (403), and
  // the report groups them by problem code.
  const auto again = run(agent() + " fleet --reel " + shell_quote(reel) + " --trust " + shell_quote(root()) +
                         " --server " + est_url(server_, "option2") + " --progress never");
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("enrolled 0"), std::string::npos) << again.output;
  EXPECT_TRUE(
      std::regex_search(again.output, std::regex(R"(option 2 \(bc\)\s+20\s+0\s+0\s+0\.0\s+bc-revoked=20\n)")))
      << again.output;
}

// Fault injection: the server is SIGKILLed and restarted on its port while a fleet of 1,000 devices
// enrolls. Devices whose connection broke retry (the fleet's backoff spans the restart); a device
// whose IDC was committed but never delivered asks again with the same key and gets the same IDC.
// Every device ends with exactly one good IDC in the server's database.
TEST_F(Agent, AFleetOfAThousandSurvivesTheServerKilledAndRestarted) {
  constexpr std::size_t kDevices = 1000;
  const auto must = [](const std::string& cmd) {
    const auto r = run(cmd);
    ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  };
  const auto reel = w() + "/r9";
  must(vendor() + " provision --mode bc --count " + std::to_string(kDevices) +
       " --part-number ATECC608B-TFLXTLS --reel R9 --out " + shell_quote(reel));
  must(oem() + " manifest import " + shell_quote(reel + "/R9.json") + " --signers " +
       shell_quote(w() + "/signers") + " --vendor-roots " + shell_quote(w() + "/roots"));
  std::string csv = "unique_id\n";
  for (const auto& e : nlohmann::json::parse(slurp(reel + "/R9.json")))
    csv += e["header"]["uniqueId"].get<std::string>() + "\n";
  ASSERT_TRUE(write_file_atomic(w() + "/r9.csv", as_bytes(csv)));
  must(oem() + " device mount --from-csv " + shell_quote(w() + "/r9.csv") + " --station line-9");

  const auto good_idcs = [] {
    const auto r = run(oem() + " cert list --ca idc --state good --limit 1000000 --json");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::map<std::string, std::string> by_serial;  // serial -> subject
    for (const auto& c : nlohmann::json::parse(r.output, nullptr, false))
      by_serial[c["serial"].get<std::string>()] = c["subject"].get<std::string>();
    return by_serial;
  };
  const auto before = good_idcs();

  testing::Child fleet;
  const std::string log = w() + "/fleet-r9.log";
  ASSERT_TRUE(
      fleet.start(agent(),
                  {"fleet", "--reel", reel, "--trust", root(), "--server", est_url(server_, "option2"),
                   "--concurrency", "16", "--attempts", "9", "--progress", "never"},
                  log));
  // Kill the server once enrollments are under way, then bring it back on the same port.
  const auto enrolled_so_far = [&] { return good_idcs().size() - before.size(); };
  for (int i = 0; i < 600 && enrolled_so_far() < 50; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto at_kill = enrolled_so_far();
  ASSERT_GE(at_kill, 50u) << "the fleet made no progress:\n" << fleet.log();
  ASSERT_LT(at_kill, kDevices) << "the fleet finished before the server could be killed";
  const int port = server_.port();
  server_.kill();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(server_.start(home(), w() + "/srv-a", {}, {}, {}, port), "");
  const int exit_code = fleet.wait();
  const std::string report = fleet.log();
  EXPECT_EQ(exit_code, 0) << report;
  EXPECT_NE(report.find("devices " + std::to_string(kDevices) + "  enrolled " + std::to_string(kDevices)),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("failed 0"), std::string::npos) << report;
  EXPECT_EQ(report.find("retries 0 "), std::string::npos) << "the kill broke no enrollment?\n" << report;

  // Exactly one good IDC per device: 1,000 new certificates, 1,000 distinct subjects (each carries
  // its device's UKID).
  const auto after = good_idcs();
  std::set<std::string> subjects;
  std::size_t added = 0;
  for (const auto& [serial, subject] : after) {
    if (before.contains(serial)) continue;
    ++added;
    subjects.insert(subject);
  }
  EXPECT_EQ(added, kDevices) << "killed at " << at_kill << " enrollments";
  EXPECT_EQ(subjects.size(), kDevices);
}

// ---------------------------------------------------------------------------------------------------
// The agent's misbehaving server: the real server's TLS certificate (so TLS verifies against the
// provisioned anchor) and its real cacerts, but simpleenroll / simplereenroll answers it must refuse.

// Every file of the device's credential generations (current/ and any other idc-*), by path, and
// where `current` points: what a refused answer must leave byte for byte as it was.
std::map<std::string, std::string> credential_files(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  out["current ->"] = fs::read_symlink(dir + "/current", ec).string();
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const auto rel = fs::relative(e.path(), dir).string();
    if (!rel.starts_with("idc-") && !rel.starts_with(".idc-")) continue;
    out[rel] = e.is_regular_file() ? slurp(e.path().string()) : "(directory)";
  }
  return out;
}

class AgentRogueServer : public Agent {
 protected:
  static void TearDownTestSuite() {
    other_idc_.clear();
    Agent::TearDownTestSuite();
  }

  // The rogue server answering `answer`; its enroll answers hold the IDC (and CA chain) of another
  // device, which the real server issued.
  std::unique_ptr<testing::RogueEstServer> rogue(testing::RogueEstServer::Answer answer) {
    if (other_idc_.empty()) {
      const auto e = enroll(chip(56), "other-device", "option2");
      EXPECT_EQ(e.exit_code, 0) << e.output;
      auto chain = x509::Certificate::parse_pem_chain(slurp(state("other-device") + "/current/idc.pem") +
                                                      slurp(state("other-device") + "/current/cacerts.pem"));
      EXPECT_TRUE(chain && chain->size() >= 2);
      if (chain) other_idc_ = crypto::base64_encode(x509::make_pkcs7_certs_only(*chain));
    }
    // The real server's cacerts answer, as it sends it.
    const auto cacerts = run("curl -sS --fail --cacert " + shell_quote(root()) + " " +
                             shell_quote(est_url(server_, "option2") + "/cacerts"));
    EXPECT_EQ(cacerts.exit_code, 0) << cacerts.output;
    auto key =
        crypto::load_private_key(home() + "/tls/server.key", "file:" + home() + "/secrets/ca-passphrase");
    EXPECT_TRUE(key) << key.error().detail;
    auto key_pem = key->to_pem();
    EXPECT_TRUE(key_pem);
    return std::make_unique<testing::RogueEstServer>(answer, slurp(home() + "/tls/server.pem"),
                                                     std::string(key_pem->reveal()), cacerts.output,
                                                     other_idc_);
  }

  // A device enrolled at the real server, then pointed at `url` (device.json's server).
  static std::string enrolled_then_moved_to(std::size_t chip_index, const std::string& name,
                                            const std::string& url) {
    const auto e = enroll(chip(chip_index), name, "option2");
    EXPECT_EQ(e.exit_code, 0) << e.output;
    auto config = nlohmann::json::parse(slurp(state(name) + "/device.json"));
    config["server"] = url;
    EXPECT_TRUE(write_file_atomic(state(name) + "/device.json", as_bytes(config.dump(2) + "\n")));
    return name;
  }

  // A first enrollment against `rogue` is refused with `message`, and leaves no credentials.
  static void expect_enroll_refused(testing::RogueEstServer& rogue, std::size_t chip_index,
                                    const std::string& name, int exit_code, const std::string& message) {
    const auto r =
        run(agent() + " enroll --chip " + shell_quote(chip(chip_index)) + " --trust " + shell_quote(root()) +
            " --server " + rogue.url("option2") + " --dir " + shell_quote(state(name)) + " --max-wait 1s");
    EXPECT_EQ(r.exit_code, exit_code) << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
    EXPECT_GE(rogue.enroll_requests(), 1) << "the agent never reached simpleenroll:\n" << r.output;
    EXPECT_EQ(credential_files(state(name)), (std::map<std::string, std::string>{{"current ->", ""}}));
  }

  // A re-enrollment against `rogue` is refused with `message`; the credentials are as they were.
  static void expect_reenroll_refused(testing::RogueEstServer& rogue, std::size_t chip_index,
                                      const std::string& name, int exit_code, const std::string& message) {
    enrolled_then_moved_to(chip_index, name, rogue.url("option2"));
    const auto before = credential_files(state(name));
    ASSERT_EQ(before.size(), 5u);  // current ->, idc-<serial>/ and its IDC, key and cacerts
    const int requests = rogue.enroll_requests();
    const auto r = run(agent() + " reenroll --dir " + shell_quote(state(name)) + " --max-wait 1s");
    EXPECT_EQ(r.exit_code, exit_code) << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
    EXPECT_GT(rogue.enroll_requests(), requests) << "the agent never reached simplereenroll:\n" << r.output;
    EXPECT_EQ(credential_files(state(name)), before);
    expect_valid_credentials(name);
  }

  static std::string other_idc_;  // base64 PKCS#7 certs-only
};
std::string AgentRogueServer::other_idc_;

TEST_F(AgentRogueServer, RefusesAnIdcForAnotherKeyAndKeepsTheCredentials) {
  const auto server = rogue(testing::RogueEstServer::Answer::as_given);
  const std::string message = "the issued certificate is for a different key than the one requested; refused";
  expect_enroll_refused(*server, 57, "other-key-enroll", 5, message);
  expect_reenroll_refused(*server, 58, "other-key-reenroll", 5, message);
}

TEST_F(AgentRogueServer, RefusesAnAnswerCutShortAndKeepsTheCredentials) {
  // Content-Length promises more than arrives before the connection closes: a lost answer, which the
  // agent retries (with the same key) until --max-wait.
  const auto server = rogue(testing::RogueEstServer::Answer::cut_short);
  const std::string message = "is truncated: the connection closed after ";
  expect_enroll_refused(*server, 59, "cut-short-enroll", 6, message);
  expect_reenroll_refused(*server, 60, "cut-short-reenroll", 6, message);
}

// 202 and 503 carry Retry-After: the agent waits what they say (its own backoff would start at
// 500 ms), asks again with the same key, and judges the answer that finally comes.
TEST_F(AgentRogueServer, WaitsWhatRetryAfterSaysOn202And503) {
  const auto server = rogue(testing::RogueEstServer::Answer::busy_then_as_given);
  const auto r =
      run(agent() + " enroll --chip " + shell_quote(chip(63)) + " --trust " + shell_quote(root()) +
          " --server " + server->url("option2") + " --dir " + shell_quote(state("busy")) + " --max-wait 20s");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_EQ(server->enroll_requests(), 3) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("retry.*attempt=1.*delay_ms=2000"))) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("retry.*attempt=2.*delay_ms=3000"))) << r.output;
  EXPECT_NE(r.output.find("the issued certificate is for a different key"), std::string::npos) << r.output;
  EXPECT_EQ(credential_files(state("busy")), (std::map<std::string, std::string>{{"current ->", ""}}));
  // A Retry-After beyond --max-wait ends the attempts at once instead of sleeping past it.
  const auto again = rogue(testing::RogueEstServer::Answer::busy_then_as_given);
  const auto g =
      run(agent() + " enroll --chip " + shell_quote(chip(64)) + " --trust " + shell_quote(root()) +
          " --server " + again->url("option2") + " --dir " + shell_quote(state("busy-2")) + " --max-wait 1s");
  EXPECT_EQ(again->enroll_requests(), 1) << g.output;
  EXPECT_NE(g.output.find("gave up after 1 attempts"), std::string::npos) << g.output;
  EXPECT_NE(g.exit_code, 0);
}

TEST_F(AgentRogueServer, RefusesAHalfBase64AnswerAndKeepsTheCredentials) {
  // The body decodes, but to half the PKCS#7 its DER header declares.
  const auto server = rogue(testing::RogueEstServer::Answer::half_of_base64);
  const std::string message = "enroll: the answer is truncated: its PKCS#7 declares ";
  expect_enroll_refused(*server, 61, "half-enroll", 2, message);
  expect_reenroll_refused(*server, 62, "half-reenroll", 2, message);
}

// ---------------------------------------------------------------------------------------------------
// The enroll, re-enroll and renew flows by every route a device may take to the server and with
// every kind of key: straight to `hallmark serve` or through nginx in front of it (nginx-config,
// nginx's TLS certificate is the server's own, so the device's anchor verifies it), with key files
// or with keys in a SoftHSM2 token standing in for the secure element.

enum class Route { direct, nginx };
enum class Keys { file, token };
void PrintTo(Route r, std::ostream* os) {
  *os << (r == Route::direct ? "direct" : "nginx");
}
void PrintTo(Keys k, std::ostream* os) {
  *os << (k == Keys::file ? "file keys" : "token keys");
}

std::string softhsm_module() {
  for (const char* m : {"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                        "/usr/local/lib/softhsm/libsofthsm2.so"}) {
    if (fs::exists(m)) return m;
  }
  return {};
}

class AgentRoute : public Agent, public ::testing::WithParamInterface<std::tuple<Route, Keys>> {
 protected:
  static void SetUpTestSuite() {
    Agent::SetUpTestSuite();
    if (::testing::Test::HasFatalFailure()) return;
    if (!testing::nginx_binary().empty()) {
      nginx_port_ = testing::free_port();
      const auto conf = w() + "/nginx-hallmark.conf";
      const auto r =
          run(oem() + " proxy nginx-config --upstream https://127.0.0.1:" + std::to_string(server_.port()) +
              " --alias option2 --alias short --alias long" +
              " --listen 127.0.0.1:" + std::to_string(nginx_port_) + " --out " + shell_quote(conf));
      // Failures here fail the tests that need nginx (SetUp), where a fatal one would skip them all.
      if (r.exit_code != 0) {
        nginx_error_ = "hallmark proxy nginx-config failed:\n" + r.output;
      } else {
        nginx_ = new testing::NginxProcess();
        nginx_error_ = nginx_->start(w() + "/nginx", conf, nginx_port_);
      }
    }
    // One token for the suite's devices; the agents find it through SOFTHSM2_CONF, their PIN in
    // DEVICE_PIN (both inherited from this process).
    if (!softhsm_module().empty() && run("softhsm2-util --version").exit_code == 0) {
      const auto hsm = w() + "/hsm";
      fs::create_directories(hsm + "/tokens");
      token_ready_ = true;
      if (!write_file_atomic(hsm + "/softhsm2.conf",
                             as_bytes("directories.tokendir = " + hsm +
                                      "/tokens\nobjectstore.backend = file\nlog.level = ERROR\n"))) {
        token_error_ = "cannot write softhsm2.conf";
        return;
      }
      ::setenv("SOFTHSM2_CONF", (hsm + "/softhsm2.conf").c_str(), 1);
      ::setenv("DEVICE_PIN", "4321", 1);
      const auto r = run("softhsm2-util --init-token --free --label device --pin 4321 --so-pin 87654321");
      if (r.exit_code != 0) token_error_ = "softhsm2-util --init-token failed:\n" + r.output;
    }
  }

  static void TearDownTestSuite() {
    delete nginx_;  // SIGTERM: nginx's master stops its workers
    nginx_ = nullptr;
    nginx_error_.clear();
    token_ready_ = false;
    token_error_.clear();
    ::unsetenv("SOFTHSM2_CONF");
    ::unsetenv("DEVICE_PIN");
    Agent::TearDownTestSuite();
  }

  void SetUp() override {
    if (route() == Route::nginx) {
      if (testing::nginx_binary().empty()) GTEST_SKIP() << "nginx is not installed (scripts/install-deps)";
      ASSERT_TRUE(nginx_error_.empty()) << nginx_error_;
      ASSERT_TRUE(nginx_ != nullptr && nginx_->running()) << "nginx is not running";
    }
    if (keys() == Keys::token) {
      if (!token_ready_) GTEST_SKIP() << "SoftHSM2 is not installed (scripts/install-deps)";
      ASSERT_TRUE(token_error_.empty()) << token_error_;
    }
  }

  static Route route() { return std::get<0>(GetParam()); }
  static Keys keys() { return std::get<1>(GetParam()); }
  static std::string route_name(Route r) { return r == Route::direct ? "direct" : "nginx"; }
  static std::string keys_name(Keys k) { return k == Keys::file ? "file" : "token"; }
  // A device name of this route and key kind.
  static std::string device(const std::string& name) {
    return name + "-" + route_name(route()) + "-" + keys_name(keys());
  }
  // Chip `k` (0-3) of this route and key kind: four chips each from 40.
  static std::size_t chip_of(std::size_t k) {
    return 40 + 4 * (2 * static_cast<std::size_t>(route()) + static_cast<std::size_t>(keys())) + k;
  }
  static std::string url(const std::string& alias) {
    if (route() == Route::direct) return est_url(server_, alias);
    return "https://127.0.0.1:" + std::to_string(nginx_port_) + "/.well-known/est/" + alias;
  }

  // Enrolls chip `k` as `name` through `alias`. With token keys, the chip's BC key first goes into
  // the token (and no longer exists on disk), and the IDC key is generated in it.
  static testing::CommandResult enroll_device(std::size_t k, const std::string& name,
                                              const std::string& alias) {
    const auto tail = " --trust " + shell_quote(root()) + " --server " + url(alias) + " --dir " +
                      shell_quote(state(name)) + " --max-wait 5s";
    if (keys() == Keys::file) return run(agent() + " enroll --chip " + shell_quote(chip(chip_of(k))) + tail);
    auto image = device::ChipImage::load(chip(chip_of(k)));
    if (!image) return {1, image.error().detail};
    const auto staging = w() + "/hsm/" + name;
    fs::create_directories(staging);
    if (!write_file_atomic(staging + "/bc.key", as_bytes(image->key.to_pem()->reveal()), 0600))
      return {1, "cannot write the BC key"};
    std::string chain;
    for (const auto& c : image->chain) chain += c.to_pem();
    if (!write_file_atomic(staging + "/bc.pem", as_bytes(chain))) return {1, "cannot write the BC"};
    const auto imported =
        run("softhsm2-util --import " + shell_quote(staging + "/bc.key") + " --token device --label bc-" +
            name + " --id " + fmt::format("{:04x}", chip_of(k)) + " --pin 4321");
    fs::remove(staging + "/bc.key");  // from here on the BC key exists only in the token
    if (imported.exit_code != 0) return imported;
    const std::string module = "?module-path=" + softhsm_module();
    return run(agent() + " enroll --bc " + shell_quote(staging + "/bc.pem") + " --bc-key " +
               shell_quote("pkcs11:token=device;object=bc-" + name + ";type=private" + module) +
               " --pin-source env:DEVICE_PIN --key " + shell_quote("pkcs11:token=device" + module) + tail);
  }

  // The agent's requests since `offset` of nginx's access log went through it with these answers
  // (e.g. "POST /.well-known/est/short/simplereenroll HTTP/1.1\" 200"); nothing to check directly.
  static void expect_through_nginx(std::size_t offset, const std::vector<std::string>& lines) {
    if (route() != Route::nginx) return;
    const auto log = nginx_->access_log();
    const auto since = log.substr(std::min(offset, log.size()));
    for (const auto& l : lines) EXPECT_NE(since.find(l), std::string::npos) << l << "\n" << since;
  }
  static std::size_t nginx_log_size() { return route() == Route::nginx ? nginx_->access_log().size() : 0; }

  static testing::NginxProcess* nginx_;
  static std::string nginx_error_;
  static int nginx_port_;
  static bool token_ready_;  // SoftHSM2 is installed
  static std::string token_error_;
};
testing::NginxProcess* AgentRoute::nginx_ = nullptr;
std::string AgentRoute::nginx_error_;
int AgentRoute::nginx_port_ = 0;
bool AgentRoute::token_ready_ = false;
std::string AgentRoute::token_error_;

TEST_P(AgentRoute, EnrollsAndReenrollsWithANewKeyAndTheSameSubject) {
  const auto name = device("re");
  const auto log_at = nginx_log_size();
  const auto e = enroll_device(0, name, "option2");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_NE(e.output.find("enrolled: "), std::string::npos) << e.output;
  expect_valid_credentials(name);
  const auto before = current_idc(name);
  EXPECT_EQ(certificates_issued_for(before.serial_hex()), 1u);

  const auto r = run(agent() + " reenroll --dir " + shell_quote(state(name)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto after = current_idc(name);
  EXPECT_NE(after.serial_hex(), before.serial_hex());
  EXPECT_TRUE(after.subject() == before.subject());
  EXPECT_FALSE(after.public_key() == before.public_key());
  expect_valid_credentials(name);
  // The previous generation is kept beside the current one.
  EXPECT_TRUE(fs::exists(state(name) + "/idc-" + before.serial_hex() + "/idc.pem"));
  // Key reuse is refused by this alias; the current credentials stay.
  const auto same = run(agent() + " reenroll --keep-key --dir " + shell_quote(state(name)));
  EXPECT_EQ(same.exit_code, 5) << same.output;
  EXPECT_NE(same.output.find("key-reuse"), std::string::npos) << same.output;
  EXPECT_EQ(current_idc(name), after);
  expect_through_nginx(log_at, {"GET /.well-known/est/option2/cacerts HTTP/1.1\" 200",
                                "POST /.well-known/est/option2/simpleenroll HTTP/1.1\" 200",
                                "POST /.well-known/est/option2/simplereenroll HTTP/1.1\" 200",
                                "POST /.well-known/est/option2/simplereenroll HTTP/1.1\" 403"});

  if (keys() == Keys::token) {
    // No private key was ever written to the state directory: the BC key and both IDC keys are the
    // token's.
    EXPECT_TRUE(fs::exists(state(name) + "/current/key.uri"));
    for (const auto& f : fs::recursive_directory_iterator(state(name))) {
      if (f.is_regular_file()) {
        EXPECT_EQ(slurp(f.path().string()).find("PRIVATE KEY"), std::string::npos) << f.path();
      }
    }
    // A wrong PIN is a clear error and changes nothing.
    const auto bad =
        run("DEVICE_PIN=0000 " + agent() + " reenroll --dir " + shell_quote(state(name)) + " --max-wait 1s");
    EXPECT_NE(bad.exit_code, 0) << bad.output;
    EXPECT_NE(bad.output.find("hallmark-device: error:"), std::string::npos) << bad.output;
    EXPECT_EQ(current_idc(name), after);
  }
}

TEST_P(AgentRoute, RenewsInsideTheWindowOnly) {
  // 2-minute IDCs (notBefore backdated 5 minutes): already in the last third of their lifetime.
  const auto short_lived = device("short");
  const auto log_at = nginx_log_size();
  auto e = enroll_device(1, short_lived, "short");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const auto first = current_idc(short_lived);
  EXPECT_FALSE(first.has_no_expiry());
  const auto r = run(agent() + " renew --dir " + shell_quote(state(short_lived)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("renewed"), std::string::npos) << r.output;
  EXPECT_NE(current_idc(short_lived).serial_hex(), first.serial_hex());
  expect_valid_credentials(short_lived);

  // 1-hour IDCs: not due, nothing sent; forced, the server refuses outside its window and the
  // credentials stay as they were.
  const auto long_lived = device("long");
  e = enroll_device(2, long_lived, "long");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const auto idc = current_idc(long_lived);
  const auto early = run(agent() + " renew --dir " + shell_quote(state(long_lived)));
  ASSERT_EQ(early.exit_code, 0) << early.output;
  EXPECT_NE(early.output.find("not due until"), std::string::npos) << early.output;
  EXPECT_EQ(current_idc(long_lived), idc);
  const auto forced = run(agent() + " renew --force --dir " + shell_quote(state(long_lived)));
  EXPECT_EQ(forced.exit_code, 5) << forced.output;
  EXPECT_NE(forced.output.find("outside-renewal-window"), std::string::npos) << forced.output;
  EXPECT_EQ(current_idc(long_lived), idc);
  expect_valid_credentials(long_lived);

  // No expiry: never renewed unless forced.
  const auto forever = device("forever");
  e = enroll_device(3, forever, "option2");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const auto never = run(agent() + " renew --dir " + shell_quote(state(forever)));
  EXPECT_EQ(never.exit_code, 0) << never.output;
  EXPECT_NE(never.output.find("no expiry"), std::string::npos) << never.output;

  expect_through_nginx(log_at, {"POST /.well-known/est/short/simpleenroll HTTP/1.1\" 200",
                                "POST /.well-known/est/short/simplereenroll HTTP/1.1\" 200",
                                "POST /.well-known/est/long/simpleenroll HTTP/1.1\" 200",
                                "POST /.well-known/est/long/simplereenroll HTTP/1.1\" 403"});
}

INSTANTIATE_TEST_SUITE_P(Through, AgentRoute,
                         ::testing::Combine(::testing::Values(Route::direct, Route::nginx),
                                            ::testing::Values(Keys::file, Keys::token)),
                         [](const ::testing::TestParamInfo<AgentRoute::ParamType>& info) {
                           return (std::get<0>(info.param) == Route::direct ? std::string("direct")
                                                                            : std::string("nginx")) +
                                  (std::get<1>(info.param) == Keys::file ? "_file_keys" : "_token_keys");
                         });

}  // namespace
}  // namespace hallmark

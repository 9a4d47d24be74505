// hallmark-device against the real server: the PKI home, the vendor station, the reels and the
// inventory are made with the real `hallmark` CLI (as scripts/demo does), then `hallmark serve` runs
// on 127.0.0.1 port 0 and the agent enrolls, re-enrolls, renews and recovers devices from the reels'
// chip images. A second server (another PKI, the first one's TLS certificate) answers cacerts from a
// root the devices do not trust.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "hallmark/core/bytes.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/device/agent.hpp"
#include "hallmark/device/fleet.hpp"
#include "hallmark/x509/certificate.hpp"
#include "process.hpp"
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
    must(vendor() + " provision --mode bc --count 40 --part-number ATECC608B-TFLXTLS --reel R2 --out " + w +
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

[est.alias.norecover]
ca = "idc"
enroll_anchors = ["vendor-bc"]
lifetime = "2s"
grace_period = "1s"
)";
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
  // The IDC verifies with openssl against the OEM root, and carries the key beside it.
  static void expect_valid_credentials(const std::string& name) {
    const auto cur = state(name) + "/current";
    const auto v = run("openssl verify -CAfile " + shell_quote(root()) + " -untrusted " +
                       shell_quote(cur + "/cacerts.pem") + " " + shell_quote(cur + "/idc.pem"));
    EXPECT_EQ(v.exit_code, 0) << v.output;
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

TEST_F(Agent, ReenrollsWithANewKeyAndTheSameSubject) {
  ASSERT_EQ(enroll(chip(4), "re", "option2").exit_code, 0);
  const auto before = current_idc("re");
  const auto r = run(agent() + " reenroll --dir " + shell_quote(state("re")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto after = current_idc("re");
  EXPECT_NE(after.serial_hex(), before.serial_hex());
  EXPECT_TRUE(after.subject() == before.subject());
  EXPECT_FALSE(after.public_key() == before.public_key());
  expect_valid_credentials("re");
  // The previous generation is kept beside the current one.
  EXPECT_TRUE(fs::exists(state("re") + "/idc-" + before.serial_hex() + "/idc.pem"));
  // Key reuse is refused by this alias; the current credentials stay.
  const auto same = run(agent() + " reenroll --keep-key --dir " + shell_quote(state("re")));
  EXPECT_EQ(same.exit_code, 5) << same.output;
  EXPECT_NE(same.output.find("key-reuse"), std::string::npos) << same.output;
  EXPECT_EQ(current_idc("re"), after);
}

TEST_F(Agent, RenewsInsideTheWindowOnly) {
  // 2-minute IDCs (notBefore backdated 5 minutes): already in the last third of their lifetime.
  ASSERT_EQ(enroll(chip(5), "short", "short").exit_code, 0);
  const auto first = current_idc("short");
  EXPECT_FALSE(first.has_no_expiry());
  const auto r = run(agent() + " renew --dir " + shell_quote(state("short")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("renewed"), std::string::npos) << r.output;
  EXPECT_NE(current_idc("short").serial_hex(), first.serial_hex());
  expect_valid_credentials("short");

  // 1-hour IDCs: not due, nothing sent; forced, the server refuses outside its window and the
  // credentials stay as they were.
  ASSERT_EQ(enroll(chip(6), "long", "long").exit_code, 0);
  const auto idc = current_idc("long");
  const auto early = run(agent() + " renew --dir " + shell_quote(state("long")));
  ASSERT_EQ(early.exit_code, 0) << early.output;
  EXPECT_NE(early.output.find("not due until"), std::string::npos) << early.output;
  EXPECT_EQ(current_idc("long"), idc);
  const auto forced = run(agent() + " renew --force --dir " + shell_quote(state("long")));
  EXPECT_EQ(forced.exit_code, 5) << forced.output;
  EXPECT_NE(forced.output.find("outside-renewal-window"), std::string::npos) << forced.output;
  EXPECT_EQ(current_idc("long"), idc);
  expect_valid_credentials("long");

  // No expiry: never renewed unless forced.
  ASSERT_EQ(enroll(chip(11), "forever", "option2").exit_code, 0);
  const auto never = run(agent() + " renew --dir " + shell_quote(state("forever")));
  EXPECT_EQ(never.exit_code, 0) << never.output;
  EXPECT_NE(never.output.find("no expiry"), std::string::npos) << never.output;
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
  // Once more: every device is enrolled and its BC revoked, so each new key is refused (403), and
  // the report groups them by problem code.
  const auto again = run(agent() + " fleet --reel " + shell_quote(reel) + " --trust " + shell_quote(root()) +
                         " --server " + est_url(server_, "option2") + " --progress never");
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("enrolled 0"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("bc-revoked=20"), std::string::npos) << again.output;
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

// SoftHSM2 stands in for the secure element: the chip's BC key is imported into a token, the agent
// enrolls with it (mTLS and nothing on disk), and the IDC keys are generated in the token.
TEST_F(Agent, EnrollsAndReenrollsWithKeysInAPkcs11Token) {
  std::string module;
  for (const char* m : {"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                        "/usr/local/lib/softhsm/libsofthsm2.so"}) {
    if (fs::exists(m)) module = m;
  }
  if (module.empty() || run("softhsm2-util --version").exit_code != 0)
    GTEST_SKIP() << "SoftHSM2 is not installed";
  const auto hsm = w() + "/hsm";
  fs::create_directories(hsm + "/tokens");
  ASSERT_TRUE(write_file_atomic(hsm + "/softhsm2.conf",
                                as_bytes("directories.tokendir = " + hsm +
                                         "/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")));
  const std::string env = "SOFTHSM2_CONF=" + shell_quote(hsm + "/softhsm2.conf") + " DEVICE_PIN=4321 ";
  auto r = run(env + "softhsm2-util --init-token --free --label device --pin 4321 --so-pin 87654321");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto image = device::ChipImage::load(chip(10));
  ASSERT_TRUE(image);
  ASSERT_TRUE(write_file_atomic(hsm + "/bc.key", as_bytes(image->key.to_pem()->reveal()), 0600));
  std::string chain;
  for (const auto& c : image->chain) chain += c.to_pem();
  ASSERT_TRUE(write_file_atomic(hsm + "/bc.pem", as_bytes(chain)));
  r = run(env + "softhsm2-util --import " + shell_quote(hsm + "/bc.key") +
          " --token device --label bc --id 01 --pin 4321");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fs::remove(hsm + "/bc.key");  // from here on the BC key exists only in the token

  const std::string mp = "?module-path=" + module;
  r = run(env + agent() + " enroll --bc " + shell_quote(hsm + "/bc.pem") + " --bc-key " +
          shell_quote("pkcs11:token=device;object=bc;type=private" + mp) +
          " --pin-source env:DEVICE_PIN --key " + shell_quote("pkcs11:token=device" + mp) + " --trust " +
          shell_quote(root()) + " --server " + est_url(server_, "option2") + " --dir " +
          shell_quote(state("hsm")) + " --max-wait 5s");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto cur = state("hsm") + "/current";
  ASSERT_TRUE(fs::exists(cur + "/key.uri"));
  EXPECT_FALSE(fs::exists(cur + "/key.pem"));
  EXPECT_FALSE(fs::exists(state("hsm") + "/bc.key"));
  const auto first = current_idc("hsm");
  const auto v = run("openssl verify -CAfile " + shell_quote(root()) + " -untrusted " +
                     shell_quote(cur + "/cacerts.pem") + " " + shell_quote(cur + "/idc.pem"));
  EXPECT_EQ(v.exit_code, 0) << v.output;

  r = run(env + agent() + " reenroll --dir " + shell_quote(state("hsm")) + " --max-wait 5s");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto second = current_idc("hsm");
  EXPECT_NE(second.serial_hex(), first.serial_hex());
  EXPECT_FALSE(second.public_key() == first.public_key());
  // The IDC's key is the token's: the agent's status loads it through the engine and the IDC matches.
  ::setenv("SOFTHSM2_CONF", (hsm + "/softhsm2.conf").c_str(), 1);
  ::setenv("DEVICE_PIN", "4321", 1);
  auto uri = read_text_file(cur + "/key.uri");
  ASSERT_TRUE(uri);
  auto key = device::load_key(uri->substr(0, uri->find('\n')), "env:DEVICE_PIN");
  ASSERT_TRUE(key) << key.error().detail;
  EXPECT_TRUE((*key)->public_key() == second.public_key());
  // No private key was ever written to the state directory.
  for (const auto& e : fs::recursive_directory_iterator(state("hsm"))) {
    if (e.is_regular_file()) {
      EXPECT_EQ(slurp(e.path().string()).find("PRIVATE KEY"), std::string::npos) << e.path();
    }
  }
  // A wrong PIN is a clear error and changes nothing.
  r = run("SOFTHSM2_CONF=" + shell_quote(hsm + "/softhsm2.conf") + " DEVICE_PIN=0000 " + agent() +
          " reenroll --dir " + shell_quote(state("hsm")) + " --max-wait 1s");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_EQ(current_idc("hsm"), second);
}

}  // namespace
}  // namespace hallmark

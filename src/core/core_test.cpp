#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/core/exit_code.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/core/secret.hpp"

namespace hallmark {
namespace {

// Scripts depend on these numbers (README, docs/device.md): they never change meaning.
TEST(ExitCode, EachErrorClassHasItsStableStatus) {
  EXPECT_EQ(exit_code(Errc::internal), 1);
  EXPECT_EQ(exit_code(Errc::crypto), 1);
  EXPECT_EQ(exit_code(Errc::invalid_input), 2);
  EXPECT_EQ(exit_code(Errc::not_found), 3);
  EXPECT_EQ(exit_code(Errc::conflict), 4);
  EXPECT_EQ(exit_code(Errc::forbidden), 5);
  EXPECT_EQ(exit_code(Errc::unauthenticated), 5);
  EXPECT_EQ(exit_code(Errc::unavailable), 6);
}

TEST(Hex, RoundTripsAndAcceptsSeparators) {
  const Bytes b{std::byte{0x01}, std::byte{0xab}, std::byte{0xff}};
  EXPECT_EQ(to_hex(b), "01abff");
  EXPECT_EQ(parse_hex("01ABff").value(), b);
  EXPECT_EQ(parse_hex("01:ab:FF").value(), b);
}

TEST(Hex, RejectsBadInputWithReason) {
  EXPECT_EQ(parse_hex("abc").error().detail, "hex: odd number of digits");
  EXPECT_EQ(parse_hex("zz").error().code, Errc::invalid_input);
  EXPECT_EQ(parse_hex("a:b").error().detail, "hex: separator inside a byte");
}

TEST(Iso8601, FormatsAndParses) {
  const auto t = parse_iso8601("2019-08-15T17:36:07Z").value();
  EXPECT_EQ(to_iso8601(t), "2019-08-15T17:36:07Z");
  EXPECT_EQ(parse_iso8601("2019-08-15T19:36:07.123+02:00").value(), t);
  EXPECT_EQ(to_iso8601(kNoExpiry), "9999-12-31T23:59:59Z");
  EXPECT_FALSE(parse_iso8601("2019-13-01T00:00:00Z"));
  EXPECT_FALSE(parse_iso8601("2019-08-15 17:36"));
  EXPECT_FALSE(parse_iso8601("2019-08-15T17:36:07"));
}

TEST(Secret, ComparesAndReadsFromFileOrEnvironment) {
  Secret s("hunter2");
  EXPECT_TRUE(s.equals("hunter2"));
  EXPECT_FALSE(s.equals("hunter3"));
  EXPECT_FALSE(s.equals("hunter"));

  const auto dir = std::filesystem::temp_directory_path() / ("hm-core-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = (dir / "pass").string();
  std::ofstream(file) << "from-file\r\n";
  EXPECT_EQ(read_secret("file:" + file).value().reveal(), "from-file");
  ::setenv("HM_CORE_TEST_SECRET", "from-env", 1);
  EXPECT_EQ(read_secret("env:HM_CORE_TEST_SECRET").value().reveal(), "from-env");
  EXPECT_EQ(read_secret("env:HM_CORE_TEST_UNSET_VAR").error().detail,
            "environment variable HM_CORE_TEST_UNSET_VAR is not set");
  EXPECT_EQ(read_secret("hunter2").error().code, Errc::invalid_input);
  std::ofstream(file, std::ios::trunc) << "";
  EXPECT_EQ(read_secret("file:" + file).error().detail, "secret file " + file + " is empty");
  std::filesystem::remove_all(dir);
}

TEST(Files, WriteAtomicSetsModeAndReplaces) {
  const auto dir = std::filesystem::temp_directory_path() / ("hm-core-w-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = (dir / "key.pem").string();
  ASSERT_TRUE(write_file_atomic(file, as_bytes("one"), 0600));
  ASSERT_TRUE(write_file_atomic(file, as_bytes("two"), 0600));
  EXPECT_EQ(read_text_file(file).value(), "two");
  const auto perms = std::filesystem::status(file).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);  // no temporary left behind
  EXPECT_EQ(read_file((dir / "missing").string()).error().code, Errc::not_found);
  std::filesystem::remove_all(dir);
}

TEST(Files, ConcurrentAtomicWritesOfOneFileAllSucceed) {
  // Two writers replacing the same file (a CRL written by `crl generate` and by `serve`) each rename
  // their own temporary: none fails, the file is one of the writes, nothing is left behind.
  const auto dir = std::filesystem::temp_directory_path() / ("hm-core-c-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = (dir / "ca.crl").string();
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    writers.emplace_back([&, t] {
      const std::string text = "writer " + std::to_string(t);
      for (int i = 0; i < 50; ++i) {
        if (!write_file_atomic(file, as_bytes(text))) ++failures;
      }
    });
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(read_text_file(file).value().starts_with("writer "));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hallmark

#include "hallmark/core/progress.hpp"

namespace hallmark {
namespace {

TEST(Progress, RendersBarRateAndEta) {
  EXPECT_EQ(ProgressBar::render(50, 100, 2.0, 10), "[#####-----]  50%  50/100  25/s  ETA 2s");
  EXPECT_EQ(ProgressBar::render(100, 100, 4.0, 10), "[##########] 100%  100/100  25/s  in 4.0s");
  EXPECT_EQ(ProgressBar::render(0, 0, 0.0, 4), "[####] 100%  0/0  0/s  in 0.0s");
}

TEST(Progress, CountsFromManyThreads) {
  ProgressBar bar("test", 4000, ProgressBar::Mode::never);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) bar.add();
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(bar.done(), 4000u);
}

}  // namespace
}  // namespace hallmark

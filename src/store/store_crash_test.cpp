// Crash test: a child process records issuances into SQLite and is SIGKILLed at a random moment;
// afterwards the database passes its integrity check and holds every serial the child reported.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>

#include "hallmark/store/store.hpp"

namespace hallmark::store {
namespace {

struct Child {
  pid_t pid = -1;
  int out = -1;
};

Child spawn_writer(const std::string& db, int threads) {
  int fds[2];
  if (::pipe(fds) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    const std::string n = std::to_string(threads);
    ::execl(HALLMARK_STORE_CRASH_WRITER, HALLMARK_STORE_CRASH_WRITER, db.c_str(), n.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  return Child{pid, fds[0]};
}

// Reads until the deadline (or EOF when deadline is nullopt); returns the complete lines.
void read_lines(int fd, std::string& buffer, std::chrono::steady_clock::time_point until, bool to_eof) {
  char chunk[4096];
  for (;;) {
    int timeout = -1;
    if (!to_eof) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      timeout = static_cast<int>(left.count());
    }
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, timeout);
    if (ready <= 0) return;
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n <= 0) return;
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

TEST(SqliteCrash, KilledWriterLosesNothingItReported) {
  char tmpl[] = "/tmp/hallmark-crash-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string db = dir + "/store.db";
  std::mt19937 rng(std::random_device{}());

  std::set<std::string> reported;
  for (int round = 0; round < 3; ++round) {
    Child child = spawn_writer(db, 8);
    ASSERT_GT(child.pid, 0);
    std::string buffer;
    // Wait for the first commit (start-up is slow on a loaded machine), then kill at a random moment.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (buffer.find('\n') == std::string::npos && std::chrono::steady_clock::now() < give_up)
      read_lines(child.out, buffer, std::chrono::steady_clock::now() + std::chrono::milliseconds(50), false);
    const auto kill_after = std::chrono::milliseconds(100 + rng() % 900);
    read_lines(child.out, buffer, std::chrono::steady_clock::now() + kill_after, false);
    ASSERT_EQ(::kill(child.pid, SIGKILL), 0);
    read_lines(child.out, buffer, {}, true);  // lines already in the pipe were committed too
    ::close(child.out);
    int status = 0;
    ::waitpid(child.pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child exited on its own: " << status;

    std::istringstream lines(buffer);
    std::size_t count = 0;
    for (std::string line; std::getline(lines, line);) {
      if (line.size() == 32) {  // a torn last line cannot happen (one write per line), but be strict
        reported.insert(line);
        ++count;
      }
    }
    EXPECT_GT(count, 10u) << "round " << round << ": the child committed too little to test anything";

    auto opened = open_store("sqlite:" + db);
    ASSERT_TRUE(opened) << opened.error().detail;
    auto& store = **opened;
    auto report = store.integrity_check();
    ASSERT_TRUE(report) << report.error().detail;
    EXPECT_TRUE(report->ok) << report->detail;
    std::size_t missing = 0;
    for (const auto& serial : reported)
      if (!store.find_certificate_by_serial(serial)) ++missing;
    EXPECT_EQ(missing, 0u) << "of " << reported.size() << " reported serials";
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hallmark::store

#pragma once
// `hallmark serve` (or any program) as a child process of a test or a benchmark: started with its
// output in a log file, its port read from the --port-file it writes once it listens, stopped with
// SIGTERM. No GoogleTest here (benchmarks use it too); test/serve_harness.hpp adds the test helpers.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hallmark/core/bytes.hpp"

namespace hallmark::testing {

// The file's text; empty when it cannot be read.
inline std::string slurp(const std::string& path) {
  auto t = read_text_file(path);
  return t ? *t : std::string();
}

// A [server] table for tests: loopback, port 0 (the port file tells the port), few threads. More
// keys of the table may follow it.
inline std::string server_config(int threads, int handler_threads) {
  return "\n[server]\nlisten = \"127.0.0.1\"\nport = 0\nthreads = " + std::to_string(threads) +
         "\nhandler_threads = " + std::to_string(handler_threads) + "\n";
}

// The [est] table with `alias` its default alias: IDCs from the idc CA for devices whose BC chains to
// `anchor`, the BC revoked once the IDC is issued.
inline std::string default_alias_config(const std::string& alias, const std::string& anchor) {
  return "\n[est]\ndefault_alias = \"" + alias + "\"\n\n[est.alias." + alias +
         "]\nca = \"idc\"\nenroll_anchors = [\"" + anchor + "\"]\nafter_issue = \"revoke-bc\"\n";
}

// A child process (argv[0] = `program`) with stdout and stderr appended to `log`, run in `cwd` when
// given. The destructor kills it (SIGKILL) if it still runs.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { kill_now(); }

  bool start(const std::string& program, const std::vector<std::string>& args, const std::string& log,
             const std::string& cwd = {}) {
    log_ = log;
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(program.c_str()));
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(program.c_str(), argv.data());
      ::_exit(127);
    }
    return pid_ > 0;
  }

  [[nodiscard]] bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  // SIGTERM (or `sig`), then the exit status; SIGKILL after 15 s (-1).
  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    for (int i = 0; i < 150; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill_now();
    return -1;
  }

  // Waits for the child to exit on its own; its exit status (128 + signal when killed).
  int wait() {
    if (pid_ <= 0) return -1;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void kill_now() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] std::string log() const { return slurp(log_); }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

// `hallmark --home HOME [global...] serve --port 0 --port-file F [serve...]`, started and its port
// read once it listens. Its files (port file, log) go in `dir`, under names of their own.
class ServeProcess {
 public:
  // Empty on success, else what went wrong (with the server's log). Waits up to 60 s. `global` goes
  // before "serve" (e.g. {"--db", url}), `serve` after it; `cwd` is the server's working directory;
  // `port` 0 is any free port (a restart passes the port it had).
  [[nodiscard]] std::string start(const std::string& home, const std::string& dir,
                                  const std::vector<std::string>& global = {},
                                  const std::vector<std::string>& serve = {}, const std::string& cwd = {},
                                  int port = 0) {
    const auto tag = std::to_string(std::random_device{}());
    port_file_ = dir + "/port-" + tag;
    log_ = dir + "/serve-" + tag + ".log";
    std::vector<std::string> args{"--home", home};
    args.insert(args.end(), global.begin(), global.end());
    args.insert(args.end(), {"serve", "--port", std::to_string(port), "--port-file", port_file_});
    args.insert(args.end(), serve.begin(), serve.end());
    if (!child_.start(HALLMARK_CLI, args, log_, cwd)) return "fork failed";
    for (int i = 0; i < 600 && !std::filesystem::exists(port_file_); ++i) {
      if (!child_.running()) return "hallmark serve exited early:\n" + child_.log();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!std::filesystem::exists(port_file_)) return "no port file after 60 s:\n" + child_.log();
    port_ = std::stoi(slurp(port_file_));
    return {};
  }
  int stop() { return child_.stop(); }
  void kill() { child_.kill_now(); }
  [[nodiscard]] bool running() { return child_.running(); }
  [[nodiscard]] pid_t pid() const { return child_.pid(); }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string log() const { return child_.log(); }
  [[nodiscard]] std::string url(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  Child child_;
  std::string port_file_, log_;
  int port_ = 0;
};

}  // namespace hallmark::testing

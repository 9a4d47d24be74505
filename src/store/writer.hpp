#pragma once
// Group commit: callers enqueue a transaction closure; one writer thread runs a batch of closures in
// one transaction (a SAVEPOINT each, so a failing closure rolls back only itself), commits once and
// then completes every caller. Each caller still waits for its own durable commit, but concurrent
// callers share one fsync instead of queueing for one each.
//
// Every batch first locks the audit chain head (one row), so appends are serialized across writers
// and nodes and all write transactions take their locks in the same order (no deadlocks).
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "hallmark/store/records.hpp"
#include "sql.hpp"

namespace hallmark::store {

// An audit record waiting for its batch: ids and hashes are assigned when the batch locks the chain
// head, just before COMMIT, so the head is held for a few statements rather than the whole batch.
struct PendingAudit {
  AuditEvent event;
  Id* id_out = nullptr;  // receives the record's id once the batch committed
};

// What a write closure sees: the connection inside the open transaction, and the audit chain.
class WriteTx {
 public:
  WriteTx(sql::Connection& conn, std::vector<PendingAudit>& audits) : conn_(conn), audits_(audits) {}
  [[nodiscard]] sql::Connection& conn() { return conn_; }
  // Appends to the chain in this transaction (rolled back with the closure when it fails).
  void append_audit(const AuditEvent& event, Id* id_out = nullptr) { audits_.push_back({event, id_out}); }

 private:
  sql::Connection& conn_;
  std::vector<PendingAudit>& audits_;
};

using WriteFn = std::function<Status(WriteTx&)>;
using ConnFn = std::function<Status(sql::Connection&)>;

class Writer final {
 public:
  using Connect = std::function<Result<std::unique_ptr<sql::Connection>>()>;

  // One lane (thread + connection) per element of `conns`; a null element connects with `connect`
  // before its first transaction. SQLite has one lane (one writer); PostgreSQL may have several,
  // which overlap their round trips and serialize only on the audit head at the end of a batch.
  Writer(std::vector<std::unique_ptr<sql::Connection>> conns, Connect connect, std::string begin_sql,
         int max_batch);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Runs fn in the next batch; returns after the batch committed (or fn's own error). `alone`: in a
  // batch of its own (a long transaction must not hold other callers' work back).
  [[nodiscard]] Status submit(WriteFn fn, bool alone = false);
  // Runs fn alone in a transaction of its own, without the audit chain (migrations).
  [[nodiscard]] Status exclusive(ConnFn fn);

 private:
  struct Job {
    WriteFn write;
    ConnFn alone;
    bool solo = false;  // a write run in a batch of its own
    Status result;
    bool done = false;
  };
  struct Lane {
    std::unique_ptr<sql::Connection> conn;
    std::thread thread;
  };

  void loop(Lane& lane);
  [[nodiscard]] Status ensure_connection(Lane& lane);
  [[nodiscard]] Status begin(sql::Connection& conn);
  void run_alone(sql::Connection& conn, Job& job);
  void run_batch(sql::Connection& conn, std::span<std::shared_ptr<Job>> jobs);
  void run_single(sql::Connection& conn, Job& job);
  [[nodiscard]] Status append_audits(sql::Connection& conn, std::vector<PendingAudit>& audits,
                                     std::vector<Id>& ids);
  [[nodiscard]] Status enqueue_and_wait(std::shared_ptr<Job> job);

  Connect connect_;
  std::string begin_sql_;
  std::size_t max_batch_;

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
  std::uint64_t batches_ = 0;       // guarded by mu_
  std::uint64_t transactions_ = 0;  // guarded by mu_
  std::vector<Lane> lanes_;
};

}  // namespace hallmark::store

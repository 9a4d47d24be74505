#pragma once
// Group commit: callers enqueue a transaction closure; one writer thread runs a batch of closures in
// one transaction (a SAVEPOINT each, so a failing closure rolls back only itself), commits once and
// then completes every caller. Each caller still waits for its own durable commit, but concurrent
// callers share one fsync instead of queueing for one each.
//
// Every batch first locks the audit chain head (one row), so appends are serialized across writers
// and nodes and all write transactions take their locks in the same order (no deadlocks).
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
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

// A write that is one statement, decided by its result: the statements of a whole batch go to
// PostgreSQL in one round trip. `then` runs after the batch's statements did, with this one's rows
// or error (conflict, ...); it may append audit events and read, but not write. It must fail only
// when the statement changed nothing (its savepoint is already released by then): a statement that
// must be undone has to fail itself.
struct StatementWrite {
  std::string sql;
  std::vector<sql::Value> params;
  std::function<Status(Result<sql::Rows>, WriteTx&)> then;
};

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
  [[nodiscard]] Status submit(StatementWrite write);
  // Runs fn alone in a transaction of its own, without the audit chain (migrations).
  [[nodiscard]] Status exclusive(ConnFn fn);
  // Jobs waiting for a lane (tests order their callers with it).
  [[nodiscard]] std::size_t waiting();

 private:
  struct Job {
    WriteFn write;
    std::optional<StatementWrite> statement;
    ConnFn alone;
    bool solo = false;  // a write run in a batch of its own
    Status result;
    std::mutex done_mu;
    std::condition_variable done_cv;
    bool done = false;  // guarded by done_mu, set after result; the caller waits on done_cv
  };
  struct Lane {
    std::unique_ptr<sql::Connection> conn;
    std::thread thread;
    bool busy = false;  // guarded by mu_
  };

  void loop(std::size_t index);
  [[nodiscard]] Status ensure_connection(Lane& lane);
  [[nodiscard]] Status begin(sql::Connection& conn);
  void run_alone(sql::Connection& conn, Job& job);
  void run_batch(sql::Connection& conn, std::vector<std::shared_ptr<Job>>& batch);
  // Moves statement jobs from the head of the queue into the running batch; how many.
  std::size_t take_statements(std::vector<std::shared_ptr<Job>>& batch);
  [[nodiscard]] bool statements_queued();
  void run_single(sql::Connection& conn, Job& job);
  // Runs the statement jobs in one round trip (more after a failure); false: the transaction is
  // lost (every job's result says why).
  // `head`: also lock the audit head in the same round trip and return its row there.
  [[nodiscard]] bool run_statements(sql::Connection& conn, std::span<std::shared_ptr<Job>> jobs,
                                    std::vector<PendingAudit>& audits, bool& any_ok,
                                    std::optional<sql::Row>* head);
  // `head`: the audit head row, locked already; otherwise it is locked and read here.
  [[nodiscard]] Status append_audits(sql::Connection& conn, std::vector<PendingAudit>& audits,
                                     std::vector<Id>& ids, const std::optional<sql::Row>& head);
  [[nodiscard]] Status enqueue_and_wait(std::shared_ptr<Job> job);
  void complete(std::span<std::shared_ptr<Job>> jobs);

  Connect connect_;
  std::string begin_sql_;
  std::size_t max_batch_;

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
  // A lane is running a group-commit batch. Only one does at a time: batches serialize on the audit
  // head through their COMMIT anyway, so a second lane would only split the callers into smaller
  // batches; the other lanes stay free for work that runs alone (streaming imports).
  bool batch_running_ = false;
  std::uint64_t batches_ = 0;       // guarded by mu_
  std::uint64_t transactions_ = 0;  // guarded by mu_

  std::vector<Lane> lanes_;
};

}  // namespace hallmark::store

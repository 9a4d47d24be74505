#include "writer.hpp"

#include "hallmark/core/log.hpp"
#include "hallmark/store/audit.hpp"

namespace hallmark::store {

namespace {
// Audit rows per INSERT at the end of a batch.
constexpr std::size_t kAuditRowsPerInsert = 50;
}  // namespace

Writer::Writer(std::vector<std::unique_ptr<sql::Connection>> conns, Connect connect, std::string begin_sql,
               int max_batch)
    : connect_(std::move(connect)),
      begin_sql_(std::move(begin_sql)),
      max_batch_(static_cast<std::size_t>(max_batch > 0 ? max_batch : 1)),
      lanes_(conns.empty() ? 1 : conns.size()) {
  for (std::size_t i = 0; i < conns.size(); ++i) lanes_[i].conn = std::move(conns[i]);
  for (std::size_t i = 0; i < lanes_.size(); ++i) lanes_[i].thread = std::thread([this, i] { loop(i); });
}

Writer::~Writer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& lane : lanes_) lane.thread.join();
  log::debug("store_writer_stopped",
             {{"batches", std::to_string(batches_)}, {"transactions", std::to_string(transactions_)}});
}

Status Writer::submit(WriteFn fn, bool alone) {
  auto job = std::make_shared<Job>();
  job->write = std::move(fn);
  job->solo = alone;
  return enqueue_and_wait(std::move(job));
}

Status Writer::submit(StatementWrite write) {
  auto job = std::make_shared<Job>();
  job->statement = std::move(write);
  return enqueue_and_wait(std::move(job));
}

Status Writer::exclusive(ConnFn fn) {
  auto job = std::make_shared<Job>();
  job->alone = std::move(fn);
  return enqueue_and_wait(std::move(job));
}

std::size_t Writer::waiting() {
  std::lock_guard lock(mu_);
  return queue_.size();
}

Status Writer::enqueue_and_wait(std::shared_ptr<Job> job) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return fail(Errc::unavailable, "store is closing");
    queue_.push_back(job);
  }
  // With several lanes only some may take this job (see loop): wake them all.
  if (lanes_.size() == 1) {
    work_cv_.notify_one();
  } else {
    work_cv_.notify_all();
  }
  // Each caller sleeps on its own job: completing a batch wakes its callers and nobody else. A
  // condition variable, not std::atomic::wait, whose libstdc++ spin of sched_yield calls costs a
  // busy server more CPU than the futex it ends in.
  std::unique_lock lock(job->done_mu);
  job->done_cv.wait(lock, [&] { return job->done; });
  return std::move(job->result);
}

void Writer::complete(std::span<std::shared_ptr<Job>> jobs) {
  for (auto& job : jobs) {
    {
      std::lock_guard lock(job->done_mu);
      job->done = true;
    }
    job->done_cv.notify_one();
  }
}

void Writer::loop(std::size_t index) {
  Lane& lane = lanes_[index];
  std::vector<std::shared_ptr<Job>> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // Group-commit batches go to the first idle lane: the same connection (and server process)
      // stays warm, rather than batches hopping between lanes.
      auto first_idle = [&] {
        for (std::size_t j = 0; j < index; ++j)
          if (!lanes_[j].busy) return false;
        return true;
      };
      auto startable = [&] {
        return queue_.front()->alone || queue_.front()->solo || (!batch_running_ && first_idle());
      };
      work_cv_.wait(lock, [&] { return (stop_ && !batch_running_) || (!queue_.empty() && startable()); });
      if (queue_.empty()) return;  // stopping and drained
      if (!startable()) continue;  // stopping: the running batch's lane drains the rest
      if (queue_.front()->alone || queue_.front()->solo) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      } else {
        while (!queue_.empty() && !queue_.front()->alone && !queue_.front()->solo &&
               batch.size() < max_batch_) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        batch_running_ = true;
      }
      if (!batch.front()->alone) {
        ++batches_;
        transactions_ += batch.size();
      }
      lane.busy = true;
    }
    const bool group = !batch.front()->alone && !batch.front()->solo;
    // A lane busy with work of its own lets the next lane take group-commit batches.
    if (!group && lanes_.size() > 1) work_cv_.notify_all();
    if (auto st = ensure_connection(lane); !st) {
      for (auto& job : batch) job->result = st;
    } else if (batch.front()->alone) {
      run_alone(*lane.conn, *batch.front());
    } else {
      run_batch(*lane.conn, batch);
    }
    {
      std::lock_guard lock(mu_);
      if (group) batch_running_ = false;
      lane.busy = false;
    }
    if (lanes_.size() > 1) work_cv_.notify_all();
    complete(batch);
    batch.clear();
  }
}

Status Writer::ensure_connection(Lane& lane) {
  if (lane.conn && lane.conn->healthy()) return {};
  if (lane.conn) return lane.conn->reconnect();
  if (!connect_) return fail(Errc::internal, "writer has no connection");
  lane.conn = HM_TRY(connect_());
  return {};
}

Status Writer::begin(sql::Connection& conn) {
  auto st = conn.exec(begin_sql_);
  // A connection the server dropped (restart) is noticed only now: nothing ran yet, so reconnect
  // and begin once more.
  if (!st && !conn.healthy() && conn.reconnect()) st = conn.exec(begin_sql_);
  return st;
}

void Writer::run_alone(sql::Connection& conn, Job& job) {
  if (auto st = begin(conn); !st) {
    job.result = st;
    return;
  }
  auto st = job.alone(conn);
  if (st) st = conn.exec("COMMIT");
  if (!st) (void)conn.exec("ROLLBACK");
  job.result = std::move(st);
}

Status Writer::append_audits(sql::Connection& conn, std::vector<PendingAudit>& audits, std::vector<Id>& ids,
                             const std::optional<sql::Row>& head) {
  sql::Rows rows;
  if (head) {
    rows.push_back(*head);
  } else {
    rows = HM_TRY(conn.query(std::string("SELECT last_id, last_hash FROM audit_head WHERE id = 1") +
                             std::string(conn.for_update())));
  }
  if (rows.empty()) return fail(Errc::internal, "audit_head row missing: database not migrated?");
  Id last_id = rows.front().i64(0);
  Bytes last_hash = rows.front().blob(1);

  std::vector<Bytes> hashes;  // prev_hash of record i is hashes[i], its hash hashes[i + 1]
  hashes.reserve(audits.size() + 1);
  hashes.push_back(last_hash);
  ids.clear();
  for (const auto& a : audits) {
    ids.push_back(++last_id);
    hashes.push_back(audit_hash(hashes.back(), last_id, a.event));
  }
  for (std::size_t start = 0; start < audits.size(); start += kAuditRowsPerInsert) {
    const std::size_t end = std::min(audits.size(), start + kAuditRowsPerInsert);
    std::string sql =
        "INSERT INTO audit (id, event_time, actor, action, object, outcome, reason, request_id, prev_hash, "
        "hash) "
        "VALUES ";
    std::vector<sql::Param> params;
    params.reserve((end - start) * 10);
    for (std::size_t i = start; i < end; ++i) {
      const auto& e = audits[i].event;
      sql += i == start ? "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" : ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
      params.insert(params.end(),
                    {sql::Param{ids[i]}, sql::secs(e.time), sql::Param{std::string_view(e.actor)},
                     sql::Param{std::string_view(e.action)}, sql::Param{std::string_view(e.object)},
                     sql::Param{to_string(e.outcome)}, sql::Param{std::string_view(e.reason)},
                     sql::Param{std::string_view(e.request_id)}, sql::Param{ByteView(hashes[i])},
                     sql::Param{ByteView(hashes[i + 1])}});
    }
    // Queued: on PostgreSQL the inserts, the head update and COMMIT go in one round trip.
    HM_TRY_VOID(conn.queue(sql, params));
  }
  HM_TRY_VOID(conn.queue("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1",
                         {last_id, ByteView(hashes.back())}));
  return {};
}

void Writer::run_single(sql::Connection& conn, Job& job) {
  std::vector<PendingAudit> audits;
  WriteTx tx(conn, audits);
  job.result = job.write(tx);
  std::vector<Id> ids;
  if (job.result && !audits.empty()) job.result = append_audits(conn, audits, ids, std::nullopt);
  if (job.result) job.result = conn.exec("COMMIT");
  if (!job.result) {
    (void)conn.exec("ROLLBACK");
    return;
  }
  for (std::size_t i = 0; i < audits.size(); ++i)
    if (audits[i].id_out) *audits[i].id_out = ids[i];
}

bool Writer::run_statements(sql::Connection& conn, std::span<std::shared_ptr<Job>> jobs,
                            std::vector<PendingAudit>& audits, bool& any_ok, std::optional<sql::Row>* head) {
  static constexpr std::string_view kSavepoint = "SAVEPOINT hm";
  static constexpr std::string_view kRelease = "RELEASE SAVEPOINT hm";
  static constexpr std::string_view kLockHead =
      "SELECT last_id, last_hash FROM audit_head WHERE id = 1 FOR UPDATE";
  std::vector<std::vector<sql::Param>> params(jobs.size());
  for (std::size_t k = 0; k < jobs.size(); ++k)
    for (const auto& v : jobs[k]->statement->params) params[k].push_back(sql::view(v));
  std::vector<int> attempts(jobs.size(), 0);
  auto lost = [&](const Error& e) {
    for (auto& job : jobs) job->result = std::unexpected(e);
    return false;
  };

  std::size_t pos = 0;
  while (pos < jobs.size()) {
    // Each job in a savepoint of its own, all in one round trip; the first failure stops the rest.
    std::vector<sql::Statement> list;
    list.reserve(3 * (jobs.size() - pos));
    for (std::size_t k = pos; k < jobs.size(); ++k) {
      list.push_back({kSavepoint, {}});
      list.push_back({jobs[k]->statement->sql, params[k]});
      list.push_back({kRelease, {}});
    }
    if (head) list.push_back({kLockHead, {}});
    auto results = conn.run_many(list);
    if (!results) return lost(results.error());
    if (head && results->back() && *results->back() && !results->back()->value().empty())
      *head = results->back()->value().front();
    // The first statement that failed; the server ran nothing after it, and the transaction block
    // is aborted until its savepoint is rolled back: do that before any `then` reads.
    std::size_t failed = jobs.size();
    for (std::size_t k = pos; k < jobs.size(); ++k) {
      const std::size_t at = 3 * (k - pos);
      const auto& sp = (*results)[at];
      if (!sp) return lost(Error{Errc::internal, "savepoint did not run"});
      if (!*sp) return lost(sp->error());
      const auto& res = (*results)[at + 1];
      if (!res || !*res) {
        failed = k;
        break;
      }
      const auto& release = (*results)[at + 2];
      if (!release || !*release) return lost(release ? release->error() : Error{Errc::internal, "release"});
    }
    std::optional<Error> failure;
    if (failed < jobs.size()) {
      const auto& res = (*results)[3 * (failed - pos) + 1];
      failure = res ? res->error() : Error{Errc::internal, "statement did not run"};
      if (failure->code == Errc::unavailable) return lost(*failure);
      if (auto st = conn.exec("ROLLBACK TO SAVEPOINT hm; RELEASE SAVEPOINT hm"); !st) return lost(st.error());
    }
    for (std::size_t k = pos; k < failed; ++k) {
      auto& job = *jobs[k];
      WriteTx tx(conn, audits);
      const std::size_t mark = audits.size();
      job.result = job.statement->then(std::move(*(*results)[3 * (k - pos) + 1]), tx);
      if (job.result) {
        any_ok = true;
      } else {
        audits.resize(mark);
      }
    }
    if (!failure) break;
    // The failed statement was undone: let `then` word the failure, go on with the next job in a
    // new round trip. A deadlock victim is run once more.
    std::size_t next = failed + 1;
    if (failure->code == Errc::conflict && failure->detail.starts_with("retry:") && attempts[failed]++ == 0) {
      next = failed;
    } else {
      auto& job = *jobs[failed];
      WriteTx tx(conn, audits);
      const std::size_t mark = audits.size();
      job.result = job.statement->then(std::unexpected(*failure), tx);
      if (job.result) job.result = std::unexpected(*failure);  // its changes were undone
      audits.resize(mark);
    }
    pos = next;
  }
  return true;
}

bool Writer::statements_queued() {
  std::lock_guard lock(mu_);
  return !queue_.empty() && queue_.front()->statement && !queue_.front()->solo;
}

std::size_t Writer::take_statements(std::vector<std::shared_ptr<Job>>& batch) {
  std::lock_guard lock(mu_);
  const std::size_t before = batch.size();
  while (!queue_.empty() && queue_.front()->statement && !queue_.front()->solo && batch.size() < max_batch_) {
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  transactions_ += batch.size() - before;
  return batch.size() - before;
}

void Writer::run_batch(sql::Connection& conn, std::vector<std::shared_ptr<Job>>& batch) {
  std::span<std::shared_ptr<Job>> jobs(batch);
  auto fail_all = [&](const Status& st) {
    (void)conn.exec("ROLLBACK");
    for (auto& job : jobs) job->result = st;
  };
  // A batch of statements sends BEGIN with its first round trip. A connection the server dropped
  // (restart) is noticed only then, with nothing done: begin afresh once (see begin()).
  const bool begin_queued = jobs.front()->statement && conn.dialect() == sql::Dialect::postgres;
  if (begin_queued) {
    if (auto st = conn.queue(begin_sql_); !st) return fail_all(st);
  } else if (auto st = begin(conn); !st) {
    return fail_all(st);
  }
  bool first_round = begin_queued;
  // A batch of one closure needs no savepoint: its failure rolls back the whole transaction.
  if (jobs.size() == 1 && !jobs.front()->statement) return run_single(conn, *jobs.front());

  std::vector<PendingAudit> audits;
  std::optional<sql::Row> head;  // locked already by the last statements
  bool any_ok = false;
  // Savepoint statements are queued: on PostgreSQL they travel with the closure's first statement
  // (one round trip), on SQLite they run at once.
  bool open = false;  // a savepoint is already open for the next job
  for (std::size_t i = 0; i < jobs.size();) {
    if (jobs[i]->statement) {
      std::size_t end = i;
      while (end < jobs.size() && jobs[end]->statement) ++end;
      // The last statements of a batch also lock the audit head, in the same round trip, when
      // nothing else is waiting to join (the head stays the last lock a transaction takes).
      const bool last =
          end == jobs.size() && !statements_queued() && conn.dialect() == sql::Dialect::postgres;
      head.reset();
      bool ran = run_statements(conn, jobs.subspan(i, end - i), audits, any_ok, last ? &head : nullptr);
      if (!ran && first_round && jobs[i]->result.error().code == Errc::unavailable) {
        (void)conn.exec("ROLLBACK");
        if (!conn.healthy()) (void)conn.reconnect();
        audits.clear();
        any_ok = false;
        if (conn.queue(begin_sql_))
          ran = run_statements(conn, jobs.subspan(i, end - i), audits, any_ok, last ? &head : nullptr);
      }
      first_round = false;
      if (!ran) {
        const Status lost = jobs[i]->result;  // every statement job carries what lost the transaction
        return fail_all(lost);
      }
      // Statements that arrived meanwhile (callers of the previous batch coming back) join this
      // transaction, a round trip each time, rather than wait for the next one.
      if (end == jobs.size() && !head && take_statements(batch) > 0)
        jobs = std::span<std::shared_ptr<Job>>(batch);
      open = false;
      i = end;
      continue;
    }
    auto& job = jobs[i];
    for (int attempt = 0;; ++attempt) {
      if (!open) {
        if (auto st = conn.queue("SAVEPOINT hm"); !st) return fail_all(st);
      }
      open = false;
      const std::size_t mark = audits.size();
      WriteTx tx(conn, audits);
      job->result = job->write(tx);
      if (job->result) {
        if (auto st = conn.queue("RELEASE SAVEPOINT hm"); !st) return fail_all(st);
        any_ok = true;
        break;
      }
      audits.resize(mark);
      // ROLLBACK TO keeps the savepoint open: the next job (or attempt) reuses it.
      if (auto st = conn.exec("ROLLBACK TO SAVEPOINT hm"); !st) return fail_all(st);
      open = true;
      // A deadlock victim or serialization failure (PostgreSQL, several lanes): once more.
      if (attempt > 0 || job->result.error().code != Errc::conflict ||
          !job->result.error().detail.starts_with("retry:"))
        break;
    }
    ++i;
  }

  if (!any_ok) {
    (void)conn.exec("ROLLBACK");
    return;
  }
  std::vector<Id> ids;
  Status st;
  if (!audits.empty()) st = append_audits(conn, audits, ids, head);
  if (st) st = conn.exec("COMMIT");
  if (!st) {
    (void)conn.exec("ROLLBACK");
    log::warn("store_commit_failed",
              {{"error", st.error().detail}, {"transactions", std::to_string(jobs.size())}});
    for (auto& job : jobs)
      if (job->result) job->result = st;
    return;
  }
  for (std::size_t i = 0; i < audits.size(); ++i)
    if (audits[i].id_out) *audits[i].id_out = ids[i];
}

}  // namespace hallmark::store

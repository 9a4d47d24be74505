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
  for (auto& lane : lanes_) lane.thread = std::thread([this, &lane] { loop(lane); });
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

Status Writer::exclusive(ConnFn fn) {
  auto job = std::make_shared<Job>();
  job->alone = std::move(fn);
  return enqueue_and_wait(std::move(job));
}

Status Writer::enqueue_and_wait(std::shared_ptr<Job> job) {
  std::unique_lock lock(mu_);
  if (stop_) return fail(Errc::unavailable, "store is closing");
  queue_.push_back(job);
  work_cv_.notify_one();
  done_cv_.wait(lock, [&] { return job->done; });
  return std::move(job->result);
}

void Writer::loop(Lane& lane) {
  std::vector<std::shared_ptr<Job>> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      if (queue_.front()->alone || queue_.front()->solo) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      } else {
        while (!queue_.empty() && !queue_.front()->alone && !queue_.front()->solo &&
               batch.size() < max_batch_) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
    }
    if (auto st = ensure_connection(lane); !st) {
      for (auto& job : batch) job->result = st;
    } else if (batch.front()->alone) {
      run_alone(*lane.conn, *batch.front());
    } else {
      run_batch(*lane.conn, batch);
    }
    {
      std::lock_guard lock(mu_);
      for (auto& job : batch) job->done = true;
      if (!batch.front()->alone) {
        ++batches_;
        transactions_ += batch.size();
      }
    }
    done_cv_.notify_all();
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

Status Writer::append_audits(sql::Connection& conn, std::vector<PendingAudit>& audits, std::vector<Id>& ids) {
  auto rows = HM_TRY(conn.query(std::string("SELECT last_id, last_hash FROM audit_head WHERE id = 1") +
                                std::string(conn.for_update())));
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
    HM_TRY_VOID(conn.execute(sql, params));
  }
  HM_TRY_VOID(conn.execute("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1",
                           {last_id, ByteView(hashes.back())}));
  return {};
}

void Writer::run_single(sql::Connection& conn, Job& job) {
  std::vector<PendingAudit> audits;
  WriteTx tx(conn, audits);
  job.result = job.write(tx);
  std::vector<Id> ids;
  if (job.result && !audits.empty()) job.result = append_audits(conn, audits, ids);
  if (job.result) job.result = conn.exec("COMMIT");
  if (!job.result) {
    (void)conn.exec("ROLLBACK");
    return;
  }
  for (std::size_t i = 0; i < audits.size(); ++i)
    if (audits[i].id_out) *audits[i].id_out = ids[i];
}

void Writer::run_batch(sql::Connection& conn, std::span<std::shared_ptr<Job>> jobs) {
  auto fail_all = [&](const Status& st) {
    (void)conn.exec("ROLLBACK");
    for (auto& job : jobs) job->result = st;
  };
  if (auto st = begin(conn); !st) return fail_all(st);
  // A batch of one needs no savepoint: its failure rolls back the whole transaction.
  if (jobs.size() == 1) return run_single(conn, *jobs.front());

  std::vector<PendingAudit> audits;
  bool any_ok = false;
  // On PostgreSQL each statement is a round trip: release one savepoint and open the next together.
  const bool chain = conn.dialect() == sql::Dialect::postgres;
  bool open = false;  // a savepoint is already open for the next job
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    auto& job = jobs[i];
    for (int attempt = 0;; ++attempt) {
      if (!open) {
        if (auto st = conn.exec("SAVEPOINT hm"); !st) return fail_all(st);
      }
      open = false;
      const std::size_t mark = audits.size();
      WriteTx tx(conn, audits);
      job->result = job->write(tx);
      if (job->result) {
        const bool next = chain && i + 1 < jobs.size();
        if (auto st = conn.exec(next ? "RELEASE SAVEPOINT hm; SAVEPOINT hm" : "RELEASE SAVEPOINT hm"); !st)
          return fail_all(st);
        open = next;
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
  }

  if (!any_ok) {
    (void)conn.exec("ROLLBACK");
    return;
  }
  std::vector<Id> ids;
  Status st;
  if (!audits.empty()) st = append_audits(conn, audits, ids);
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

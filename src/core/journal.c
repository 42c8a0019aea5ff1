#include "core/journal.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

struct journal {
    sqlite3 *db;
};

static const char *SCHEMA =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "INSERT OR IGNORE INTO meta VALUES('schema_version','1');"
    "CREATE TABLE IF NOT EXISTS events("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL,"
    "  vm TEXT, kind TEXT NOT NULL, detail TEXT);"
    "CREATE INDEX IF NOT EXISTS events_vm ON events(vm, id);"
    "CREATE TABLE IF NOT EXISTS jobs("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, state TEXT NOT NULL,"
    "  updated_ms INTEGER NOT NULL, record TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, id);"
    "CREATE TABLE IF NOT EXISTS used_tokens(nonce TEXT PRIMARY KEY, exp INTEGER NOT NULL);";

journal_t *journal_open(const char *path, char *err, size_t errlen)
{
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open journal %s: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "cannot initialise journal %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_close(db);
        return NULL;
    }
    journal_t *j = xcalloc(1, sizeof *j);
    j->db = db;
    return j;
}

void journal_close(journal_t *j)
{
    if (!j)
        return;
    sqlite3_close(j->db);
    free(j);
}

static sqlite3_stmt *prepare(journal_t *j, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(j->db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_error("journal: prepare failed: %s", sqlite3_errmsg(j->db));
        return NULL;
    }
    return st;
}

static int step_done(journal_t *j, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        log_error("journal: write failed: %s", sqlite3_errmsg(j->db));
        return -1;
    }
    return 0;
}

int journal_event(journal_t *j, const char *vm, const char *kind, json_t *detail)
{
    sqlite3_stmt *st = prepare(j, "INSERT INTO events(ts_ms, vm, kind, detail) VALUES(?,?,?,?)");
    if (!st)
        return -1;
    char *text = detail ? json_dumps(detail, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)wall_ms());
    sqlite3_bind_text(st, 2, vm, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, text, -1, SQLITE_TRANSIENT);
    free(text);
    return step_done(j, st);
}

static json_t *parse_column(sqlite3_stmt *st, int col)
{
    const char *text = (const char *)sqlite3_column_text(st, col);
    if (!text)
        return json_null();
    json_t *v = json_loads(text, 0, NULL);
    return v ? v : json_string(text);
}

json_t *journal_events(journal_t *j, const char *vm, int limit)
{
    sqlite3_stmt *st = prepare(j,
        "SELECT * FROM (SELECT id, ts_ms, vm, kind, detail FROM events"
        " WHERE (?1 IS NULL OR vm = ?1) ORDER BY id DESC LIMIT ?2) ORDER BY id");
    json_t *out = json_array();
    if (!st)
        return out;
    sqlite3_bind_text(st, 1, vm, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, limit);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *evm = (const char *)sqlite3_column_text(st, 2);
        json_array_append_new(out, json_pack("{s:I, s:I, s:s?, s:s, s:o}",
            "id", (json_int_t)sqlite3_column_int64(st, 0),
            "ts_ms", (json_int_t)sqlite3_column_int64(st, 1),
            "vm", evm,
            "kind", (const char *)sqlite3_column_text(st, 3),
            "detail", parse_column(st, 4)));
    }
    sqlite3_finalize(st);
    return out;
}

static const char *record_state(json_t *record)
{
    const char *s = json_string_value(json_object_get(record, "state"));
    return s ? s : "unknown";
}

int64_t journal_job_insert(journal_t *j, json_t *record)
{
    sqlite3_stmt *st = prepare(j, "INSERT INTO jobs(state, updated_ms, record) VALUES(?,?,?)");
    if (!st)
        return -1;
    char *text = json_dumps(record, JSON_COMPACT);
    sqlite3_bind_text(st, 1, record_state(record), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)wall_ms());
    sqlite3_bind_text(st, 3, text, -1, SQLITE_TRANSIENT);
    free(text);
    if (step_done(j, st) < 0)
        return -1;
    return (int64_t)sqlite3_last_insert_rowid(j->db);
}

int journal_job_update(journal_t *j, int64_t id, json_t *record)
{
    sqlite3_stmt *st = prepare(j, "UPDATE jobs SET state=?, updated_ms=?, record=? WHERE id=?");
    if (!st)
        return -1;
    char *text = json_dumps(record, JSON_COMPACT);
    sqlite3_bind_text(st, 1, record_state(record), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)wall_ms());
    sqlite3_bind_text(st, 3, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, id);
    free(text);
    return step_done(j, st);
}

json_t *journal_job_get(journal_t *j, int64_t id)
{
    sqlite3_stmt *st = prepare(j, "SELECT record FROM jobs WHERE id=?");
    if (!st)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    json_t *out = NULL;
    if (sqlite3_step(st) == SQLITE_ROW)
        out = parse_column(st, 0);
    sqlite3_finalize(st);
    return out;
}

json_t *journal_jobs(journal_t *j, const char *const *states, int limit)
{
    json_t *out = json_array();
    /* The newest `limit` jobs in the wanted states, returned oldest first.
     * The states go into the query so that the limit applies after them. */
    json_t *wanted = json_array();
    for (int i = 0; states && states[i]; i++)
        json_array_append_new(wanted, json_string(states[i]));
    char *wanted_text = json_dumps(wanted, JSON_COMPACT);
    json_decref(wanted);
    sqlite3_stmt *st = prepare(j,
        "SELECT * FROM (SELECT id, record FROM jobs WHERE ?1 = 0"
        " OR state IN (SELECT value FROM json_each(?2)) ORDER BY id DESC LIMIT ?3) ORDER BY id");
    if (!st) {
        free(wanted_text);
        return out;
    }
    sqlite3_bind_int(st, 1, states ? 1 : 0);
    sqlite3_bind_text(st, 2, wanted_text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 3, limit);
    free(wanted_text);
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(out, parse_column(st, 1));
    sqlite3_finalize(st);
    return out;
}

int journal_token_use(journal_t *j, const char *nonce, long long exp)
{
    /* Forget tokens that expired anyway; a replay of one fails on expiry. */
    sqlite3_stmt *st = prepare(j, "DELETE FROM used_tokens WHERE exp < strftime('%s','now') - 60");
    if (st)
        step_done(j, st);
    st = prepare(j, "INSERT INTO used_tokens(nonce, exp) VALUES(?, ?)");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, nonce, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, exp);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : 1;
}

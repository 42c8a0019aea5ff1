/* The web console and /metrics (docs/CONSOLE.md): HTTPS with the host's
 * certificate (libevent's evhttp on OpenSSL bufferevents), off unless the
 * host setting `console` is on.  It is a transport like src/server/'s: every
 * /api/ request becomes a call of an API method (src/api/dispatch.c) under
 * the session's principal, so the rights check, the audit and the handlers
 * are the CLI's; nothing here decides what a user may do.
 *
 * Routes:
 *   GET  /login?t=TOKEN       a signed one-time login -> session cookie, 303 to /
 *   GET  /                    the page (share/console/index.html); /static/NAME its files
 *   GET  /api/session         the user, host and CSRF token of the session
 *   POST /api/METHOD          one API call: JSON params in, {"result"} or {"error"} out; needs X-CSRF-Token
 *   GET  /api/stream/METHOD   Server-Sent Events of a read-only streaming call (jobs.watch, jobs.follow)
 *   POST /logout              ends the session (X-CSRF-Token)
 *   GET  /metrics             Prometheus text format: a session, or a client certificate of this host's
 *                             CA whose principal holds vm.read here (a Prometheus scraper)
 * Anything else, and anything without a session, is refused. */
#ifndef VMOVE_CONSOLE_H
#define VMOVE_CONSOLE_H

struct agent;
struct console;

#define CONSOLE_MAX_BODY (1u << 20)
#define CONSOLE_MAX_HEADERS (64u << 10)
#define CONSOLE_MAX_CALLS 256
#define CONSOLE_PING_S 15

/* dir: where index.html and the other static files are (vmoved --console-dir). */
struct console *console_new(struct agent *a, const char *dir);
/* Serve or stop serving as the host settings say now (the server calls it
 * every second, so `host set --console on` takes effect within one). */
void console_sync(struct console *c);
void console_free(struct console *c);
#endif

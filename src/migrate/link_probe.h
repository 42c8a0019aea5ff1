/* Measuring the migration link before choosing compression.  The
 * destination runs a short-lived sink on its migration address; the source
 * streams zeros at it for a moment and measures what the link carried, after
 * a warm-up that fills the socket buffers. */
#ifndef VMOVE_LINK_PROBE_H
#define VMOVE_LINK_PROBE_H

struct event_base;
struct probe_sink;
struct link_probe;

/* Destination: listen on ip (port chosen by the kernel), discard what
 * arrives, stop by itself after lifetime_ms. NULL on failure. */
struct probe_sink *probe_sink_start(struct event_base *base, const char *ip, int lifetime_ms, int *port);
void probe_sink_stop(struct probe_sink *s);
/* vmoved is stopping: close every sink still open. */
void probe_sinks_stop_all(void);

/* Source: measure for about measure_ms; done(arg, bytes_per_second) with a
 * negative rate on failure.  Never calls done inside this call. */
typedef void (*link_probe_fn)(void *arg, double Bps);
struct link_probe *link_probe_run(struct event_base *base, const char *ip, int port, int measure_ms,
                                  link_probe_fn done, void *arg);
/* Abandon a probe: done is not called. */
void link_probe_cancel(struct link_probe *p);
#endif

/* libFuzzer target: the host-to-host messages (migrate/wire.h).  The first
 * byte picks the message (modulo 8), the rest is its JSON from a peer.  The
 * contract checked: X_from_json never crashes, fails with an error object,
 * and a parsed message survives X_to_json and a second X_from_json. */
#include <stdlib.h>

#include "migrate/wire.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* A failed parse must say why; a successful one must leave no error. */
static void check(int rc, json_t *err)
{
    if ((rc < 0) != (err != NULL))
        abort();
    json_decref(err);
}

/* Round trip: what we send must parse again. */
#define ROUND_TRIP(type, j)                                                    \
    do {                                                                       \
        struct type m = {0}, m2 = {0};                                         \
        json_t *err = NULL;                                                    \
        int rc = type##_from_json(j, &m, &err);                                \
        check(rc, err);                                                        \
        if (rc == 0) {                                                         \
            json_t *out = type##_to_json(&m);                                  \
            err = NULL;                                                        \
            if (!out || type##_from_json(out, &m2, &err) < 0)                  \
                abort();                                                       \
            CLEAR_##type(&m2);                                                 \
            json_decref(out);                                                  \
        }                                                                      \
        CLEAR_##type(&m);                                                      \
    } while (0)

#define CLEAR_wire_prepare_req(m) ((void)(m))
#define CLEAR_wire_prepare_reply(m) wire_prepare_reply_clear(m)
#define CLEAR_wire_finish_reply(m) ((void)(m))
#define CLEAR_wire_resolve_reply(m) ((void)(m))
#define CLEAR_wire_reserve_req(m) ((void)(m))
#define CLEAR_wire_reserve_reply(m) ((void)(m))
#define CLEAR_wire_load_req(m) ((void)(m))

static void name_req(json_t *j)
{
    struct wire_name_req m;
    json_t *err = NULL;
    check(wire_name_req_from_json(j, &m, &err), err);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1)
        return 0;
    json_t *j = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
    switch (data[0] % 8) {
    case 0: ROUND_TRIP(wire_prepare_req, j); break;
    case 1: ROUND_TRIP(wire_prepare_reply, j); break;
    case 2: name_req(j); break;
    case 3: ROUND_TRIP(wire_finish_reply, j); break;
    case 4: ROUND_TRIP(wire_resolve_reply, j); break;
    case 5: ROUND_TRIP(wire_reserve_req, j); break;
    case 6: ROUND_TRIP(wire_reserve_reply, j); break;
    default: ROUND_TRIP(wire_load_req, j); break;
    }
    json_decref(j);
    return 0;
}

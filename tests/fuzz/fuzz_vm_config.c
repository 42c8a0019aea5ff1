/* libFuzzer target: vm.json (conf/vm_config.h).  A config that parses must
 * validate, serialise canonically and parse back to the same JSON; one that
 * does not must say why. */
#include <stdlib.h>

#include "conf/vm_config.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    struct vm_config c, c2, copy;
    char err[512] = "";
    if (vm_config_from_json(j, &c, err, sizeof err) < 0) {
        if (!err[0])
            abort();
        json_decref(j);
        return 0;
    }
    if (vm_config_validate(&c, err, sizeof err) < 0)
        abort();                        /* the parser accepted what validation refuses */
    json_t *out = vm_config_to_json(&c);
    if (out) {
        if (vm_config_from_json(out, &c2, err, sizeof err) < 0)
            abort();                    /* our own canonical form must parse */
        json_t *out2 = vm_config_to_json(&c2);
        if (!json_equal(out, out2))
            abort();                    /* to_json(from_json(canonical)) == canonical */
        json_decref(out2);
        vm_config_free(&c2);
        json_decref(out);
    }
    vm_config_copy(&copy, &c);
    vm_config_free(&copy);
    vm_config_free(&c);
    json_decref(j);
    return 0;
}

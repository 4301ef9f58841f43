#include "config_file.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    Config *cfg;
    char msg[512];
    int failed;
} IniState;

static int on_entry(void *user, const char *section, const char *name, const char *value) {
    (void)section;
    IniState *st = user;
    if (st->failed) return 0;
    if (config_set(st->cfg, name, value, st->msg, sizeof st->msg)) {
        st->failed = 1;
        return 0;
    }
    return 1;
}

int config_load_file(Config *c, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open config file: %s", path, strerror(errno));
        return -1;
    }
    IniState st = {.cfg = c};
    int line = ini_parse_file(f, on_entry, &st);
    fclose(f);
    if (line == 0) return 0;
    if (line < 0) {
        snprintf(err, errlen, "%s: cannot read config file", path);
        return -1;
    }
    if (st.failed) snprintf(err, errlen, "%s:%d: %s", path, line, st.msg);
    else snprintf(err, errlen, "%s:%d: malformed line (expected key = value or [section])", path, line);
    return -1;
}

#include "config_file.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// libinih numbers lines by reader calls and splits lines longer than its
// buffer into several "lines", so the reader below hands it exactly one
// physical line per call (a too-long line is replaced by a comment and
// reported), keeping inih's line numbers equal to the file's.
typedef struct {
    Config *cfg;
    FILE *file;
    char *buf;          // getline buffer
    size_t cap;
    int line;           // physical line last handed to inih
    int too_long_line;  // first line that did not fit inih's buffer, 0 if none
    int max_line;       // inih's buffer size, characters
    int fail_line;      // line of the first key config_set rejected, 0 if none
    char msg[512];      // config_set's message for that key
} IniState;

static char *read_line(char *str, int num, void *stream) {
    IniState *st = stream;
    ssize_t n = getline(&st->buf, &st->cap, st->file);
    if (n < 0) return NULL;
    st->line++;
    size_t content = (size_t)n;
    while (content > 0 && (st->buf[content - 1] == '\n' || st->buf[content - 1] == '\r')) content--;
    if (content + 2 > (size_t)num) {  // content, '\n' and NUL must fit
        if (!st->too_long_line) {
            st->too_long_line = st->line;
            st->max_line = num - 2;
        }
        snprintf(str, (size_t)num, ";\n");
        return str;
    }
    memcpy(str, st->buf, content);
    str[content] = '\n';
    str[content + 1] = '\0';
    return str;
}

static int on_entry(void *user, const char *section, const char *name, const char *value) {
    (void)section;
    IniState *st = user;
    if (st->fail_line) return 0;
    if (config_set(st->cfg, name, value, st->msg, sizeof st->msg)) {
        st->fail_line = st->line;
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
    IniState st = {.cfg = c, .file = f};
    int line = ini_parse_stream(read_line, &st, on_entry, &st);
    int read_error = ferror(f);
    free(st.buf);
    fclose(f);
    if (line < 0 || read_error) {
        snprintf(err, errlen, "%s: cannot read config file", path);
        return -1;
    }
    // Report the first problem in the file, whichever kind it is.
    if (st.too_long_line && (line == 0 || st.too_long_line < line)) {
        snprintf(err, errlen, "%s:%d: line longer than %d characters", path, st.too_long_line, st.max_line);
        return -1;
    }
    if (line == 0) return 0;
    if (st.fail_line == line) snprintf(err, errlen, "%s:%d: %s", path, line, st.msg);
    else snprintf(err, errlen, "%s:%d: malformed line (expected key = value or [section])", path, line);
    return -1;
}

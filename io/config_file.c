// INI config files: a small reader of our own rather than libinih, whose
// fixed 200-byte line buffer refused long `data =` paths, which treated `#`
// after a value as part of it, and which gave no line for a NUL byte.
//
// The format, line by line (lines of any length; \n or \r\n endings):
//   - blank lines, and lines whose first non-blank character is ; or #, are comments;
//   - `[section]` headers are accepted and ignored (keys are flat);
//   - `key = value` (or `key: value`, as libinih read it) sets one key through
//     config_set, exactly as `--set key=value` does; blanks around key and
//     value are dropped, and a ; or # that follows a blank ends the value
//     (a comment), so `data = a#b.txt` keeps its '#';
//   - a NUL byte anywhere, or any other line, is an error.
// The first problem, in file order, is reported as "file:line: problem".
#include "config_file.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int file_fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

// Cut s at the first ; or # that starts the text or follows a blank.
static void cut_comment(char *s) {
    for (char *p = s; *p; p++)
        if ((*p == ';' || *p == '#') && (p == s || isspace((unsigned char)p[-1]))) {
            *p = '\0';
            return;
        }
}

// One line (NUL-free, line ending removed). Returns 0, or -1 with the problem
// (without file and line) in msg.
static int parse_line(Config *c, char *line, char *msg, size_t msglen) {
    cut_comment(line);
    char *s = trim(line);
    if (*s == '\0') return 0;
    if (*s == '[') {
        size_t n = strlen(s);
        if (n < 2 || s[n - 1] != ']')
            return file_fail(msg, msglen, "malformed section header (expected [section])");
        return 0;
    }
    char *sep = strpbrk(s, "=:");
    if (!sep) return file_fail(msg, msglen, "malformed line (expected key = value or [section])");
    *sep = '\0';
    char *key = trim(s), *value = trim(sep + 1);
    if (*key == '\0') return file_fail(msg, msglen, "malformed line: no key before '='");
    return config_set(c, key, value, msg, msglen);
}

int config_load_file(Config *c, const char *path, char *err, size_t errlen) {
    // O_NONBLOCK, then only regular files: fopen of a FIFO would wait for a
    // writer forever.
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return file_fail(err, errlen, "%s: cannot open config file: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return file_fail(err, errlen, "%s: the config file is not a regular file", path);
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return file_fail(err, errlen, "%s: cannot open config file: %s", path, strerror(errno));
    }
    char *buf = NULL, msg[1024];
    size_t cap = 0;
    ssize_t n;
    int line = 0, rc = 0;
    while (rc == 0 && (n = getline(&buf, &cap, f)) >= 0) {
        line++;
        size_t len = (size_t)n;
        if (memchr(buf, '\0', len)) {
            rc = file_fail(err, errlen, "%s:%d: NUL byte in the line (not a text file?)", path, line);
            break;
        }
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = '\0';
        char *text = buf;
        if (line == 1 && !strncmp(text, "\xEF\xBB\xBF", 3)) text += 3;  // UTF-8 byte-order mark
        if (parse_line(c, text, msg, sizeof msg)) rc = file_fail(err, errlen, "%s:%d: %s", path, line, msg);
    }
    if (rc == 0 && ferror(f)) rc = file_fail(err, errlen, "%s:%d: cannot read config file: %s", path, line + 1, strerror(errno));
    free(buf);
    fclose(f);
    return rc;
}

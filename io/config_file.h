// INI config files (libinih). Section headers are allowed and ignored: keys
// are flat, the same names as --set. Errors name the file, line and key.
#pragma once
#include <stddef.h>

#include "config.h"

// Apply every key of an INI file to c. Returns 0, or -1 with a one-line
// "file:line: key: problem" message in err.
int config_load_file(Config *c, const char *path, char *err, size_t errlen);

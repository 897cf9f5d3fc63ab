/* placeholder, filled below */
#include "text/jinja.h"
#include <string.h>
const char *vt_jinja_builtin(const char *name) { (void)name; return NULL; }
const char *vt_jinja_builtin_name(int i) { (void)i; return NULL; }

/* Functions edged never calls: each has a bounded or safer replacement
 * (g_snprintf/g_strdup_printf, g_strlcpy, GString, g_ascii_strtoll).
 * Force-included into every translation unit by the top-level meson.build;
 * the system headers that declare them come first so that only our code is checked. */
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#pragma GCC poison sprintf vsprintf strcpy strcat gets atoi atol atoll

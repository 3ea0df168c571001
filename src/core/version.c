/* The version of this build: see version.h. */
#include "core/version.h"

#include "spw_version_gen.h" /* build/generated, by cmake/version.cmake */

const char spw_version[] = SPW_VERSION_TEXT;
const char spw_commit[] = SPW_COMMIT_TEXT;

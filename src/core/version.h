/*
 * The version of this build: the VERSION file at the repository's root,
 * the one place it is written, and the git commit it was built from
 * ("unknown" outside a git checkout; "-dirty" when tracked files were
 * changed). Both are generated at build time (cmake/version.cmake) into
 * one object file, so a new commit rebuilds only src/core/version.c.
 */
#ifndef SPW_VERSION_H
#define SPW_VERSION_H

extern const char spw_version[]; /* "0.1.0" */
extern const char spw_commit[];  /* "1a2b3c4d5e6f", "…-dirty" or "unknown" */

#endif

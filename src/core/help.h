/*
 * Help text at 80 columns. Every command's --help, and the man pages made
 * from them (scripts/manpages.sh), go through spw_help_write, which fills
 * the text to the width by blocks:
 *   - a table row (a flag or setting, a gap of two or more spaces, its
 *     description) is refilled with its continuation lines starting at
 *     the description column, so tables of options stay tables;
 *   - a prose line is refilled at its own indentation;
 *   - the next line continues a block when it has the block's indentation
 *     and the line before reaches column 64 (it was wrapped, not ended):
 *     short lines, lists and examples stay as they are.
 * A blank line ends a block. A word longer than a line is not broken.
 */
#ifndef SPW_HELP_H
#define SPW_HELP_H

#include <stddef.h>
#include <stdio.h>

#define SPW_HELP_WIDTH 80

void spw_help_write(FILE *f, const char *text, size_t width);

#endif

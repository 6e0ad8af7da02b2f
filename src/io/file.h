/* Internal: whole-file reads and crash-safe whole-file writes. */
#ifndef SBN_IO_FILE_H
#define SBN_IO_FILE_H

#include <stddef.h>
#include <syncbn/status.h>

/* Writes size bytes to path so that a crash at any moment leaves either the
 * old file or the complete new one: a temporary file beside it, fsync,
 * rename over path, fsync of the folder. The temporary is removed on error. */
sbn_status sbn_file_write_atomic(const char *path, const void *bytes, size_t size);

/* The whole file in a malloc'd buffer (free it); SBN_ERR_IO naming the path,
 * SBN_ERR_FORMAT when it is larger than max_bytes. */
sbn_status sbn_file_read_all(const char *path, size_t max_bytes, unsigned char **bytes, size_t *size);

/* fsync of the folder that holds path (after a rename or unlink in it). */
sbn_status sbn_file_sync_folder(const char *path);

#endif

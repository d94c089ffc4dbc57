/* The floor under any FUSE filesystem on this machine: a libfuse low-level
 * daemon in C serving, from memory, a read-only file "small" of SIZE bytes and
 * a directory "dir" of ENTRIES files named 1, 2, 3...
 *
 *     fuse_floor MOUNTPOINT SIZE ENTRIES
 *
 * Opening, reading and closing "small" costs the same requests as a small
 * iterfs view (OPEN, READ, READ for EOF, RELEASE, with direct_io); listing
 * "dir" the same as listing a process directory (OPENDIR, READDIRPLUS until
 * the end, as pyfuse3 always answers, entries with timeouts 0, RELEASEDIR);
 * and nothing else: no Python, no BPF, no /proc. The benchmarks time it next
 * to iterfs. Runs in the foreground, single-threaded, until unmounted or sent
 * SIGINT/SIGTERM.
 */
#define FUSE_USE_VERSION 35

#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SMALL_INO 2
#define DIR_INO 3
#define ENTRY_INO(n) ((1ULL << 32) | (n))

static char *content;
static size_t content_size;
static unsigned long entries;

static void attributes(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (ino == FUSE_ROOT_ID || ino == DIR_INO) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
	} else if (ino != SMALL_INO) {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = content_size;
	}
}

/* As pyfuse3: always READDIRPLUS, never the kernel's adaptive choice. */
static void floor_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
}

static void floor_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param entry;

	memset(&entry, 0, sizeof(entry));
	if (parent == FUSE_ROOT_ID && strcmp(name, "small") == 0)
		entry.ino = SMALL_INO;
	else if (parent == FUSE_ROOT_ID && strcmp(name, "dir") == 0)
		entry.ino = DIR_INO;
	else {
		fuse_reply_err(req, ENOENT);
		return;
	}
	entry.attr_timeout = 3600;
	entry.entry_timeout = 3600;
	attributes(entry.ino, &entry.attr);
	fuse_reply_entry(req, &entry);
}

static void floor_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (ino != FUSE_ROOT_ID && ino != SMALL_INO && ino != DIR_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	attributes(ino, &st);
	fuse_reply_attr(req, &st, 3600);
}

static void floor_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != SMALL_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->direct_io = 1;      /* as iterfs: every read reaches the daemon */
	fuse_reply_open(req, fi);
}

static void floor_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	if ((size_t)off >= content_size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > content_size - off)
		size = content_size - off;
	fuse_reply_buf(req, content + off, size);
}

static void floor_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != DIR_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fuse_reply_open(req, fi);
}

/* Entries as pyfuse3 gives them: with attributes, timeouts 0. */
static void floor_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			      struct fuse_file_info *fi)
{
	struct fuse_entry_param entry;
	char *buffer = malloc(size);
	size_t used = 0;
	char name[24];

	(void)ino;
	(void)fi;
	if (!buffer) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memset(&entry, 0, sizeof(entry));
	for (unsigned long n = off + 1; n <= entries; n++) {
		size_t length;

		entry.ino = ENTRY_INO(n);
		attributes(entry.ino, &entry.attr);
		snprintf(name, sizeof(name), "%lu", n);
		length = fuse_add_direntry_plus(req, buffer + used, size - used, name, &entry, n);
		if (length > size - used)
			break;
		used += length;
	}
	fuse_reply_buf(req, buffer, used);
	free(buffer);
}

static const struct fuse_lowlevel_ops operations = {
	.init = floor_init,
	.opendir = floor_opendir,
	.readdirplus = floor_readdirplus,
	.lookup = floor_lookup,
	.getattr = floor_getattr,
	.open = floor_open,
	.read = floor_read,
};

int main(int argc, char *argv[])
{
	char *fuse_argv[] = { argv[0], "-o", "ro,default_permissions,fsname=fuse_floor" };
	struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
	struct fuse_session *session;
	int status = 1;

	if (argc != 4) {
		fprintf(stderr, "usage: %s MOUNTPOINT SIZE ENTRIES\n", argv[0]);
		return 2;
	}
	content_size = strtoul(argv[2], NULL, 10);
	entries = strtoul(argv[3], NULL, 10);
	content = malloc(content_size + 1);
	if (!content) {
		fprintf(stderr, "fuse_floor: out of memory\n");
		return 1;
	}
	memset(content, 'x', content_size);

	session = fuse_session_new(&args, &operations, sizeof(operations), NULL);
	if (!session)
		return 1;
	if (fuse_set_signal_handlers(session) == 0) {
		if (fuse_session_mount(session, argv[1]) == 0) {
			printf("ready\n");
			fflush(stdout);
			status = fuse_session_loop(session) ? 1 : 0;
			fuse_session_unmount(session);
		}
		fuse_remove_signal_handlers(session);
	}
	fuse_session_destroy(session);
	free(content);
	return status;
}

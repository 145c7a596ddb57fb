// hello-c: a WAGI (CGI over WASI preview 1) function in plain C.
//
// The host puts the request in CGI environment variables and the body on
// stdin; we write headers, a blank line and the body to stdout. stderr goes to
// the host's log.
//
//   GET  /hello/NAME or /hello?name=NAME  -> a greeting naming the method and path
//   POST /hello                           -> the request body, echoed byte for byte
//   anything else                         -> 404 or 405 with a Status header

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 256

static const char *env(const char *key) {
	const char *v = getenv(key);
	return v ? v : "";
}

static int hexval(char c) {
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

// url_decode decodes n bytes of src into dst (capacity cap, always
// NUL-terminated), turning '+' into a space. Malformed escapes are copied as
// they are: a greeting is no reason to fail a request.
static void url_decode(char *dst, size_t cap, const char *src, size_t n) {
	size_t j = 0;
	for (size_t i = 0; i < n && j + 1 < cap; i++) {
		if (src[i] == '+') {
			dst[j++] = ' ';
		} else if (src[i] == '%' && i + 2 < n && hexval(src[i + 1]) >= 0 && hexval(src[i + 2]) >= 0) {
			dst[j++] = (char)(hexval(src[i + 1]) << 4 | hexval(src[i + 2]));
			i += 2;
		} else {
			dst[j++] = src[i];
		}
	}
	dst[j] = '\0';
}

// query_param finds key in a query string like "a=1&name=x" and decodes its
// value into dst. It returns 0 when the key is absent.
static int query_param(char *dst, size_t cap, const char *query, const char *key) {
	size_t klen = strlen(key);
	const char *p = query;
	while (*p) {
		const char *end = strchr(p, '&');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			url_decode(dst, cap, p + klen + 1, len - klen - 1);
			return 1;
		}
		if (!end) break;
		p = end + 1;
	}
	return 0;
}

static int greet(const char *method, const char *script, const char *pathinfo) {
	char name[NAME_MAX_LEN];
	if (!query_param(name, sizeof name, env("QUERY_STRING"), "name") || name[0] == '\0') {
		// /hello/NAME: the route's wildcard part arrives as PATH_INFO ("/NAME"),
		// already URL-decoded by the host as CGI requires.
		const char *rest = pathinfo[0] == '/' ? pathinfo + 1 : pathinfo;
		snprintf(name, sizeof name, "%s", rest[0] ? rest : "world");
	}
	const char *query = env("QUERY_STRING");
	printf("Content-Type: text/plain; charset=utf-8\n");
	printf("X-Hello-Language: C\n\n");
	printf("Hello, %s! Greetings from C, via WAGI.\n", name);
	printf("You sent %s %s%s%s%s\n", method, script, pathinfo, query[0] ? "?" : "", query);
	fprintf(stderr, "hello-c: %s %s%s name=%s\n", method, script, pathinfo, name);
	return 0;
}

static int echo(const char *method) {
	const char *ctype = env("CONTENT_TYPE");
	printf("Content-Type: %s\n", ctype[0] ? ctype : "application/octet-stream");
	printf("X-Hello-Language: C\n\n");
	// Stream the body through a fixed buffer: memory stays constant whatever
	// the body size (the host bounds it anyway).
	char buf[16 * 1024];
	size_t n, total = 0;
	while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
		if (fwrite(buf, 1, n, stdout) != n) {
			fprintf(stderr, "hello-c: writing the response body failed\n");
			return 1;
		}
		total += n;
	}
	if (ferror(stdin)) {
		fprintf(stderr, "hello-c: reading the request body failed\n");
		return 1;
	}
	fprintf(stderr, "hello-c: %s echoed %zu bytes\n", method, total);
	return 0;
}

int main(void) {
	const char *method = env("REQUEST_METHOD");
	const char *script = env("SCRIPT_NAME");
	const char *pathinfo = env("PATH_INFO");

	// CGI: the request path is SCRIPT_NAME (the matched route, "/hello") plus
	// PATH_INFO (what the wildcard matched, "/NAME" or "").
	char full[1024];
	snprintf(full, sizeof full, "%s%s", script, pathinfo);
	if (strcmp(full, "/hello") != 0 && strncmp(full, "/hello/", 7) != 0) {
		printf("Status: 404 Not Found\nContent-Type: text/plain; charset=utf-8\n\n");
		printf("hello-c only answers /hello and /hello/NAME, not %s\n", full);
		return 0;
	}

	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
		return greet(method, script, pathinfo);
	}
	if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
		return echo(method);
	}
	printf("Status: 405 Method Not Allowed\nAllow: GET, HEAD, POST, PUT\n");
	printf("Content-Type: text/plain; charset=utf-8\n\n");
	printf("hello-c does not handle %s\n", method);
	return 0;
}

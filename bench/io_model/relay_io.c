/*
 * relay_io.c — how much CPU a single-threaded TCP relay spends per relayed round trip with epoll +
 * recv/send (what pgrelay and PgBouncer do through libevent) and with io_uring (multishot recv into
 * a provided buffer ring, sends as SQEs, one io_uring_submit_and_wait per loop pass; no SQPOLL, whose
 * kernel thread's CPU would not be counted against the relay). A decision record for pgrelay's I/O
 * model (bench/README.md, "I/O model"); not part of pgrelay. Run through bench/io_model/run.py.
 *
 * Roles (one binary):
 *   relay_io server <port> <spin_us>   stand-in for PostgreSQL: one process per connection, blocking
 *                                      recv/send, spins spin_us per request
 *   relay_io relay <listen_port> <server_port> <P> <epoll|uring|uring-coop|uring-plain> <statsfile>
 *                                      P server connections, clients queued FIFO for a free one
 *                                      (transaction pooling); uring = SINGLE_ISSUER|DEFER_TASKRUN,
 *                                      uring-coop = COOP_TASKRUN|SINGLE_ISSUER, uring-plain = no flags
 *   relay_io client <relay_port> <N> <threads> <statsfile>
 *                                      stand-in for pgbench: N closed-loop connections
 * Fixed framing: request = 60 bytes, reply = 100 bytes. Counters are shared through an mmap'd file.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <unistd.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <time.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <liburing.h>

#define REQ 60
#define REP 100
#define MAXC 1024

struct stats {              // shared via mmap'd file, read by driver
    volatile uint64_t rt;          // completed round trips (reply fully forwarded)
    volatile uint64_t loops;       // event loop iterations
    volatile uint64_t sc_wait;     // epoll_wait or io_uring_enter calls
    volatile uint64_t sc_recv;     // recv calls (epoll mode)
    volatile uint64_t sc_send;     // send calls (epoll mode)
    volatile uint64_t cqes;        // cqes processed (uring) / events (epoll)
    volatile uint64_t ready;       // set to 1 when relay is fully connected
    volatile uint64_t client_rt;   // round trips seen by client
};

static void die(const char *m) { perror(m); exit(1); }

static struct stats *map_stats(const char *path, int create) {
    int fd = open(path, O_RDWR | (create ? O_CREAT | O_TRUNC : 0), 0644);
    if (fd < 0) die("open stats");
    if (create && ftruncate(fd, 4096) < 0) die("ftruncate");
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("mmap");
    close(fd);
    return p;
}

static void nodelay(int fd) { int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); }

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1; setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(fd, (void *)&a, sizeof a) < 0) die("bind");
    if (listen(fd, 1024) < 0) die("listen");
    return fd;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    for (int i = 0; i < 200; i++) {
        if (connect(fd, (void *)&a, sizeof a) == 0) { nodelay(fd); return fd; }
        usleep(20000);
    }
    die("connect");
    return -1;
}

static int readn(int fd, char *b, int n) {
    int got = 0;
    while (got < n) { ssize_t r = recv(fd, b + got, n - got, 0); if (r <= 0) return -1; got += r; }
    return got;
}
static int writen(int fd, const char *b, int n) {
    int put = 0;
    while (put < n) { ssize_t r = send(fd, b + put, n - put, MSG_NOSIGNAL); if (r <= 0) return -1; put += r; }
    return put;
}
static inline uint64_t now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ull + t.tv_nsec; }

/* ---------------- server: one process per connection ---------------- */
static int server_main(int port, int spin_us) {
    signal(SIGCHLD, SIG_IGN);
    int lfd = listen_on(port);
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0) { if (errno == EINTR) continue; die("accept"); }
        nodelay(c);
        pid_t p = fork();
        if (p == 0) {
            close(lfd);
            char req[REQ], rep[REP];
            memset(rep, 'R', REP);
            for (;;) {
                if (readn(c, req, REQ) < 0) _exit(0);
                uint64_t end = now_ns() + spin_us * 1000ull;
                while (now_ns() < end) __asm__ volatile("pause");
                if (writen(c, rep, REP) < 0) _exit(0);
            }
        }
        close(c);
    }
}

/* ---------------- client: T threads, closed loop ---------------- */
struct cthr { int port, nconn; struct stats *st; };
static void *client_thread(void *arg) {
    struct cthr *ct = arg;
    int ep = epoll_create1(0);
    int *fds = calloc(ct->nconn, sizeof(int));
    int *got = calloc(ct->nconn, sizeof(int));
    char req[REQ], buf[4096];
    memset(req, 'Q', REQ);
    for (int i = 0; i < ct->nconn; i++) {
        fds[i] = connect_to(ct->port);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    while (!ct->st->ready) usleep(10000);
    for (int i = 0; i < ct->nconn; i++) writen(fds[i], req, REQ);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int k = 0; k < n; k++) {
            int i = evs[k].data.u32;
            ssize_t r = recv(fds[i], buf, sizeof buf, 0);
            if (r <= 0) exit(0);
            got[i] += r;
            if (got[i] >= REP) {
                if (got[i] != REP) { fprintf(stderr, "client: framing error %d\n", got[i]); exit(1); }
                got[i] = 0;
                __atomic_fetch_add(&ct->st->client_rt, 1, __ATOMIC_RELAXED);
                if (writen(fds[i], req, REQ) < 0) exit(0);
            }
        }
    }
    return NULL;
}
static int client_main(int port, int n, int nthr, const char *statf) {
    struct stats *st = map_stats(statf, 0);
    pthread_t th[64];
    struct cthr ct[64];
    for (int t = 0; t < nthr; t++) {
        ct[t] = (struct cthr){ port, n / nthr + (t < n % nthr), st };
        pthread_create(&th[t], NULL, client_thread, &ct[t]);
    }
    for (int t = 0; t < nthr; t++) pthread_join(th[t], NULL);
    return 0;
}

/* ---------------- relay common state ---------------- */
// conn ids: 0..N-1 clients, MAXC..MAXC+P-1 servers
struct client { int fd; int reqlen; char req[REQ]; int srv; int replen; char rep[REP]; int queued_next; };
struct server { int fd; int cli; };
static struct client cl[MAXC];
static struct server sv[MAXC];
static int ncl, nsv;
static int freesrv[MAXC], nfree;
static int qhead = -1, qtail = -1;   // FIFO of clients waiting for a server
static struct stats *ST;

static void q_push(int c) { cl[c].queued_next = -1; if (qtail < 0) qhead = qtail = c; else { cl[qtail].queued_next = c; qtail = c; } }
static int q_pop(void) { int c = qhead; if (c >= 0) { qhead = cl[c].queued_next; if (qhead < 0) qtail = -1; } return c; }

static void relay_setup(int lport, int sport, int P, int *lfd_out) {
    nsv = P;
    for (int i = 0; i < P; i++) { sv[i].fd = connect_to(sport); sv[i].cli = -1; freesrv[nfree++] = i; }
    *lfd_out = listen_on(lport);
}

/* ---------------- relay (a): epoll, level-triggered ---------------- */
static int ep;
static void ep_send(int fd, const char *b, int n) {
    ST->sc_send++;
    ssize_t r = send(fd, b, n, MSG_NOSIGNAL);
    if (r != n) { fprintf(stderr, "relay: short/failed send %zd\n", r); exit(1); }
}
static void ep_dispatch(int c) {   // client c has a full request
    if (nfree == 0) { q_push(c); return; }
    int s = freesrv[--nfree];
    sv[s].cli = c; cl[c].srv = s; cl[c].replen = 0;
    ep_send(sv[s].fd, cl[c].req, REQ);
}
static int relay_epoll(int lfd) {
    ep = epoll_create1(0);
    for (int i = 0; i < nsv; i++) { struct epoll_event ev = { .events = EPOLLIN, .data.u32 = MAXC + i }; epoll_ctl(ep, EPOLL_CTL_ADD, sv[i].fd, &ev); }
    struct epoll_event lev = { .events = EPOLLIN, .data.u32 = 2 * MAXC }; epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    ST->ready = 1;
    struct epoll_event evs[256];
    char buf[16384];
    for (;;) {
        ST->sc_wait++; ST->loops++;
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        ST->cqes += n;
        for (int k = 0; k < n; k++) {
            uint32_t id = evs[k].data.u32;
            if (id == 2 * MAXC) {
                int c = accept(lfd, NULL, NULL); if (c < 0) continue;
                nodelay(c); fcntl(c, F_SETFL, O_NONBLOCK);
                int i = ncl++; cl[i].fd = c; cl[i].reqlen = 0; cl[i].srv = -1;
                struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i }; epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
            } else if (id < MAXC) {            // client -> relay
                struct client *C = &cl[id];
                ST->sc_recv++;
                ssize_t r = recv(C->fd, C->req + C->reqlen, REQ - C->reqlen, 0);
                if (r == 0) exit(0);
                if (r < 0) { if (errno == EAGAIN) continue; die("recv client"); }
                C->reqlen += r;
                if (C->reqlen == REQ) { C->reqlen = 0; ep_dispatch(id); }
            } else {                           // server -> relay
                int s = id - MAXC;
                ST->sc_recv++;
                ssize_t r = recv(sv[s].fd, buf, sizeof buf, 0);
                if (r == 0) exit(0);
                if (r < 0) { if (errno == EAGAIN) continue; die("recv server"); }
                int c = sv[s].cli;
                if (c < 0) { fprintf(stderr, "relay: data from idle server\n"); exit(1); }
                ep_send(cl[c].fd, buf, r);     // forward as-is, one send per received chunk
                cl[c].replen += r;
                if (cl[c].replen >= REP) {
                    ST->rt++;
                    cl[c].srv = -1; sv[s].cli = -1; freesrv[nfree++] = s;
                    int q = q_pop(); if (q >= 0) ep_dispatch(q);
                }
            }
        }
    }
}

/* ---------------- relay (b): io_uring ---------------- */
static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufbase;
#define NBUF 1024
#define BUFSZ 2048
#define BGID 7
enum { T_RECV = 1, T_SEND = 2, T_ACCEPT = 3 };
#define UD(t, id) (((uint64_t)(t) << 32) | (uint32_t)(id))
static int pending_recycle;

static struct io_uring_sqe *get_sqe(void) {
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    if (!s) { ST->sc_wait++; io_uring_submit(&ring); s = io_uring_get_sqe(&ring); }
    return s;
}
static void ur_arm_recv(int fd, int id) {
    struct io_uring_sqe *s = get_sqe();
    io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = BGID;
    io_uring_sqe_set_data64(s, UD(T_RECV, id));
}
static void ur_send(int fd, const char *b, int n, int id) {
    struct io_uring_sqe *s = get_sqe();
    io_uring_prep_send(s, fd, b, n, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, UD(T_SEND, (uint32_t)n << 16 | (id & 0xffff)));
}
static void ur_dispatch(int c) {
    if (nfree == 0) { q_push(c); return; }
    int s = freesrv[--nfree];
    sv[s].cli = c; cl[c].srv = s; cl[c].replen = 0;
    ur_send(sv[s].fd, cl[c].req, REQ, MAXC + s);
}
static int relay_uring(int lfd, unsigned flags) {
    struct io_uring_params p = { .flags = flags };
    int ret = io_uring_queue_init_params(1024, &ring, &p);
    if (ret < 0) { fprintf(stderr, "queue_init: %s\n", strerror(-ret)); exit(1); }
    // provided buffer ring (liburing 2.3 has no io_uring_setup_buf_ring; do it by hand)
    size_t rsz = NBUF * sizeof(struct io_uring_buf);
    br = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (br == MAP_FAILED) die("mmap br");
    struct io_uring_buf_reg reg = { .ring_addr = (uint64_t)(uintptr_t)br, .ring_entries = NBUF, .bgid = BGID };
    ret = io_uring_register_buf_ring(&ring, &reg, 0);
    if (ret) { fprintf(stderr, "register_buf_ring: %s\n", strerror(-ret)); exit(1); }
    io_uring_buf_ring_init(br);
    bufbase = aligned_alloc(4096, (size_t)NBUF * BUFSZ);
    for (int i = 0; i < NBUF; i++) io_uring_buf_ring_add(br, bufbase + (size_t)i * BUFSZ, BUFSZ, i, io_uring_buf_ring_mask(NBUF), i);
    io_uring_buf_ring_advance(br, NBUF);
    for (int i = 0; i < nsv; i++) ur_arm_recv(sv[i].fd, MAXC + i);
    { struct io_uring_sqe *s = get_sqe(); io_uring_prep_multishot_accept(s, lfd, NULL, NULL, 0); io_uring_sqe_set_data64(s, UD(T_ACCEPT, 0)); }
    ST->ready = 1;
    for (;;) {
        ST->sc_wait++; ST->loops++;
        ret = io_uring_submit_and_wait(&ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) { fprintf(stderr, "submit_and_wait: %s\n", strerror(-ret)); exit(1); }
        struct io_uring_cqe *cqe; unsigned head, cnt = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            cnt++;
            uint64_t ud = cqe->user_data; int t = ud >> 32; uint32_t id = (uint32_t)ud;
            int res = cqe->res;
            if (t == T_ACCEPT) {
                if (res < 0) { fprintf(stderr, "accept: %s\n", strerror(-res)); exit(1); }
                nodelay(res);
                int i = ncl++; cl[i].fd = res; cl[i].reqlen = 0; cl[i].srv = -1;
                ur_arm_recv(res, i);
                if (!(cqe->flags & IORING_CQE_F_MORE)) { fprintf(stderr, "accept multishot ended\n"); exit(1); }
            } else if (t == T_SEND) {
                if (res != (int)(id >> 16)) { fprintf(stderr, "relay: uring short/failed send %d\n", res); exit(1); }
            } else { // T_RECV
                int fd = id < MAXC ? cl[id].fd : sv[id - MAXC].fd;
                if (res == 0) exit(0);
                if (res < 0) {
                    if (res != -ENOBUFS) { fprintf(stderr, "recv: %s\n", strerror(-res)); exit(1); }
                } else {
                    int bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                    char *data = bufbase + (size_t)bid * BUFSZ;
                    if (id < MAXC) {
                        struct client *C = &cl[id];
                        if (C->reqlen + res > REQ) { fprintf(stderr, "relay: client framing\n"); exit(1); }
                        memcpy(C->req + C->reqlen, data, res); C->reqlen += res;
                        if (C->reqlen == REQ) { C->reqlen = 0; ur_dispatch(id); }
                    } else {
                        int s = id - MAXC, c = sv[s].cli;
                        if (c < 0 || cl[c].replen + res > REP) { fprintf(stderr, "relay: server framing\n"); exit(1); }
                        // copy to per-client reply buffer (stable until send completes; no pipelining)
                        memcpy(cl[c].rep + cl[c].replen, data, res);
                        ur_send(cl[c].fd, cl[c].rep + cl[c].replen, res, c);
                        cl[c].replen += res;
                        if (cl[c].replen == REP) {
                            ST->rt++;
                            cl[c].srv = -1; sv[s].cli = -1; freesrv[nfree++] = s;
                            int q = q_pop(); if (q >= 0) ur_dispatch(q);
                        }
                    }
                    io_uring_buf_ring_add(br, data, BUFSZ, bid, io_uring_buf_ring_mask(NBUF), pending_recycle++);
                }
                if (!(cqe->flags & IORING_CQE_F_MORE)) ur_arm_recv(fd, id);
            }
        }
        io_uring_cq_advance(&ring, cnt);
        if (pending_recycle) { io_uring_buf_ring_advance(br, pending_recycle); pending_recycle = 0; }
        ST->cqes += cnt;
    }
}

static int relay_main(int lport, int sport, int P, const char *mode, const char *statf) {
    ST = map_stats(statf, 1);
    int lfd;
    relay_setup(lport, sport, P, &lfd);
    if (!strcmp(mode, "epoll")) return relay_epoll(lfd);
    unsigned flags = 0;
    if (!strcmp(mode, "uring")) flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    else if (!strcmp(mode, "uring-coop")) flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER;
    else if (!strcmp(mode, "uring-plain")) flags = 0;
    else { fprintf(stderr, "bad mode\n"); exit(1); }
    return relay_uring(lfd, flags);
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "server")) return server_main(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 7 && !strcmp(argv[1], "relay")) return relay_main(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), argv[5], argv[6]);
    if (argc >= 6 && !strcmp(argv[1], "client")) return client_main(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), argv[5]);
    fprintf(stderr, "usage: see source\n");
    return 2;
}

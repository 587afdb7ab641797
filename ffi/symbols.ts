/**
 * The whole `Deno.dlopen` symbol table of gsw's native library (`ffi/src/abi.rs` and `ffi/src/abi/`), each with
 * its C prototype. Conventions: integer results >= 0 are success, negative are `-code` with
 * the message in `gsw_last_error`; handles are pointers, null on failure.
 */

export const symbols = {
  // uint32_t gsw_abi_version(void)
  gsw_abi_version: { parameters: [], result: "u32" },
  // int32_t gsw_last_error(uint8_t *buf, size_t cap)
  gsw_last_error: { parameters: ["buffer", "usize"], result: "i32" },
  // int32_t gsw_last_error_code(void)
  gsw_last_error_code: { parameters: [], result: "i32" },
  // int32_t gsw_error_name(int32_t code, uint8_t *buf, size_t cap)
  gsw_error_name: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  // uint64_t gsw_realtime_ns(void)
  gsw_realtime_ns: { parameters: [], result: "u64" },
  // uint64_t gsw_monotonic_ns(void)
  gsw_monotonic_ns: { parameters: [], result: "u64" },
  // uint32_t gsw_uid(void)
  gsw_uid: { parameters: [], result: "u32" },
  // int32_t gsw_close(int fd)
  gsw_close: { parameters: ["i32"], result: "i32" },

  // int32_t gsw_signals_watch(void)
  gsw_signals_watch: { parameters: [], result: "i32" },
  // uint64_t gsw_signals_take(void)
  gsw_signals_take: { parameters: [], result: "u64" },

  // SegmentWriter *gsw_writer_create(const uint32_t *caps, const uint32_t *ids, uint32_t n)
  gsw_writer_create: { parameters: ["buffer", "buffer", "u32"], result: "pointer" },
  // void gsw_writer_free(SegmentWriter *w)
  gsw_writer_free: { parameters: ["pointer"], result: "void" },
  // int32_t gsw_writer_fds(const SegmentWriter *w, int32_t out[3])
  gsw_writer_fds: { parameters: ["pointer", "buffer"], result: "i32" },
  // int32_t gsw_writer_release_fds(const SegmentWriter *w)
  gsw_writer_release_fds: { parameters: ["pointer"], result: "i32" },
  // int32_t gsw_writer_publish(const SegmentWriter *w, uint32_t ch, const uint8_t *data,
  //                            uint32_t len, uint64_t seq, uint64_t timestamp_ns)
  gsw_writer_publish: {
    parameters: ["pointer", "u32", "buffer", "u32", "u64", "u64"],
    result: "i32",
  },
  // int32_t gsw_writer_publish_quiet(<same as gsw_writer_publish>)
  gsw_writer_publish_quiet: {
    parameters: ["pointer", "u32", "buffer", "u32", "u64", "u64"],
    result: "i32",
  },
  // int32_t gsw_writer_ring(const SegmentWriter *w)
  gsw_writer_ring: { parameters: ["pointer"], result: "i32" },
  // int32_t gsw_writer_stats(const SegmentWriter *w, uint64_t out[3])
  gsw_writer_stats: { parameters: ["pointer", "buffer"], result: "i32" },

  // SegmentReader *gsw_reader_attach(int data_fd, int ctrl_fd, int doorbell_fd)
  gsw_reader_attach: { parameters: ["i32", "i32", "i32"], result: "pointer" },
  // void gsw_reader_free(SegmentReader *r)
  gsw_reader_free: { parameters: ["pointer"], result: "void" },
  // int32_t gsw_reader_info(const SegmentReader *r, uint32_t out[3])
  gsw_reader_info: { parameters: ["pointer", "buffer"], result: "i32" },
  // int32_t gsw_reader_channel(const SegmentReader *r, uint32_t ch, uint32_t out[2])
  gsw_reader_channel: { parameters: ["pointer", "u32", "buffer"], result: "i32" },
  // int32_t gsw_reader_take(const SegmentReader *r, uint32_t ch, uint8_t *out, uint32_t len)
  gsw_reader_take: { parameters: ["pointer", "u32", "buffer", "u32"], result: "i32" },
  // int32_t gsw_reader_current(const SegmentReader *r, uint32_t ch, uint8_t *out, uint32_t len)
  gsw_reader_current: { parameters: ["pointer", "u32", "buffer", "u32"], result: "i32" },
  // int32_t gsw_reader_take_pending(const SegmentReader *r, uint8_t *out, uint32_t len)
  gsw_reader_take_pending: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  // int32_t gsw_reader_wait(const SegmentReader *r, int32_t timeout_ms)   (blocks)
  gsw_reader_wait: { parameters: ["pointer", "i32"], result: "i32" },

  // Waitset *gsw_waitset_new(void)
  gsw_waitset_new: { parameters: [], result: "pointer" },
  // void gsw_waitset_free(Waitset *ws)
  gsw_waitset_free: { parameters: ["pointer"], result: "void" },
  // int32_t gsw_waitset_add(const Waitset *ws, int fd, uint32_t token, uint32_t interest)
  gsw_waitset_add: { parameters: ["pointer", "i32", "u32", "u32"], result: "i32" },
  // int32_t gsw_waitset_add_reader(const Waitset *ws, const SegmentReader *r, uint32_t token)
  gsw_waitset_add_reader: { parameters: ["pointer", "pointer", "u32"], result: "i32" },
  // int32_t gsw_waitset_modify(const Waitset *ws, int fd, uint32_t token, uint32_t interest)
  gsw_waitset_modify: { parameters: ["pointer", "i32", "u32", "u32"], result: "i32" },
  // int32_t gsw_waitset_remove(const Waitset *ws, int fd)
  gsw_waitset_remove: { parameters: ["pointer", "i32"], result: "i32" },
  // int32_t gsw_waitset_wait(const Waitset *ws, uint8_t *out, uint32_t len, int32_t timeout_ms)
  gsw_waitset_wait: { parameters: ["pointer", "buffer", "u32", "i32"], result: "i32" },
  // The same call on Deno's blocking pool: returns a Promise, the JS thread keeps running.
  gsw_waitset_wait_async: {
    name: "gsw_waitset_wait",
    parameters: ["pointer", "buffer", "u32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  // int32_t gsw_waitset_last_error(const Waitset *ws, uint8_t *buf, size_t cap)
  gsw_waitset_last_error: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
  // int32_t gsw_waitset_cancel(const Waitset *ws)
  gsw_waitset_cancel: { parameters: ["pointer"], result: "i32" },

  // int32_t gsw_prepare_run_dir(const uint8_t *path, uint32_t len)
  gsw_prepare_run_dir: { parameters: ["buffer", "u32"], result: "i32" },
  // int32_t gsw_unlink(const uint8_t *path, uint32_t len)
  gsw_unlink: { parameters: ["buffer", "u32"], result: "i32" },
  // int32_t gsw_unix_listen(const uint8_t *path, uint32_t len, uint32_t kind)
  gsw_unix_listen: { parameters: ["buffer", "u32", "u32"], result: "i32" },
  // int32_t gsw_unix_connect(const uint8_t *path, uint32_t len, uint32_t kind)
  gsw_unix_connect: { parameters: ["buffer", "u32", "u32"], result: "i32" },
  // int32_t gsw_unix_accept(int listener, uint32_t cred_out[3])
  gsw_unix_accept: { parameters: ["i32", "buffer"], result: "i32" },
  // int32_t gsw_peer_cred(int fd, uint32_t cred_out[3])
  gsw_peer_cred: { parameters: ["i32", "buffer"], result: "i32" },
  // int32_t gsw_unix_send(int fd, const uint8_t *buf, uint32_t len, const int32_t *fds,
  //                       uint32_t nfds)
  gsw_unix_send: { parameters: ["i32", "buffer", "u32", "buffer", "u32"], result: "i32" },
  // int32_t gsw_unix_recv(int fd, uint8_t *buf, uint32_t cap, int32_t *fds, uint32_t max_fds,
  //                       uint32_t *nfds)
  gsw_unix_recv: {
    parameters: ["i32", "buffer", "u32", "buffer", "u32", "buffer"],
    result: "i32",
  },

  // int32_t gsw_udp_open(const uint8_t *bind, uint32_t bind_len, uint16_t port,
  //                      const uint8_t *mcast, uint32_t mcast_len, uint32_t rcvbuf)
  gsw_udp_open: { parameters: ["buffer", "u32", "u16", "buffer", "u32", "u32"], result: "i32" },
  // int32_t gsw_udp_open_sender(void)
  gsw_udp_open_sender: { parameters: [], result: "i32" },
  // int32_t gsw_udp_local_port(int fd)
  gsw_udp_local_port: { parameters: ["i32"], result: "i32" },
  // int32_t gsw_udp_receive_buffer(int fd)
  gsw_udp_receive_buffer: { parameters: ["i32"], result: "i32" },
  // Batch *gsw_batch_new(uint32_t max)
  gsw_batch_new: { parameters: ["u32"], result: "pointer" },
  // void gsw_batch_free(Batch *b)
  gsw_batch_free: { parameters: ["pointer"], result: "void" },
  // int32_t gsw_batch_recv(Batch *b, int fd, uint8_t *buf, uint32_t buf_len, uint32_t slot,
  //                        uint8_t *meta, uint32_t meta_len)
  gsw_batch_recv: {
    parameters: ["pointer", "i32", "buffer", "u32", "u32", "buffer", "u32"],
    result: "i32",
  },
  // int32_t gsw_batch_send(Batch *b, int fd, const uint8_t *buf, uint32_t buf_len,
  //                        const uint32_t *lens, uint32_t n, const uint8_t *ip,
  //                        uint32_t ip_len, uint16_t port, const uint16_t *ports,
  //                        uint32_t ports_len)
  gsw_batch_send: {
    parameters: [
      "pointer",
      "i32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "buffer",
      "u32",
      "u16",
      "buffer",
      "u32",
    ],
    result: "i32",
  },

  // Extractor *gsw_extractor_new(const uint32_t *fields, uint32_t n, uint32_t packets,
  //                              uint32_t measurements)
  gsw_extractor_new: { parameters: ["buffer", "u32", "u32", "u32"], result: "pointer" },
  // void gsw_extractor_free(Extractor *e)
  gsw_extractor_free: { parameters: ["pointer"], result: "void" },
  // int32_t gsw_extractor_add_link(Extractor *e, const SegmentWriter *w,
  //                                const uint32_t *channel_of, uint32_t n)
  gsw_extractor_add_link: { parameters: ["pointer", "pointer", "buffer", "u32"], result: "i32" },
  // int32_t gsw_extractor_remove_link(Extractor *e, const SegmentWriter *w)
  gsw_extractor_remove_link: { parameters: ["pointer", "pointer"], result: "i32" },
  // int32_t gsw_extractor_publish_batch(Extractor *e, const uint8_t *buf, uint32_t buf_len,
  //   uint32_t slot, const uint8_t *meta, uint32_t meta_len, const uint32_t *types, uint32_t n,
  //   uint32_t port)
  gsw_extractor_publish_batch: {
    parameters: ["pointer", "buffer", "u32", "u32", "buffer", "u32", "buffer", "u32", "u32"],
    result: "i32",
  },
  // int32_t gsw_extractor_set_broadcast(Extractor *e, const BroadcastWriter *w,
  //                                     const uint32_t *channel_of, uint32_t n)
  gsw_extractor_set_broadcast: {
    parameters: ["pointer", "pointer", "buffer", "u32"],
    result: "i32",
  },

  // BroadcastWriter *gsw_broadcast_new(const uint32_t *caps, const uint32_t *ids,
  //   const uint32_t *bell_of, uint32_t n, uint32_t bells, uint32_t ring_bell, uint32_t ring_size)
  gsw_broadcast_new: {
    parameters: ["buffer", "buffer", "buffer", "u32", "u32", "u32", "u32"],
    result: "pointer",
  },
  // void gsw_broadcast_free(BroadcastWriter *w)
  gsw_broadcast_free: { parameters: ["pointer"], result: "void" },
  // int32_t gsw_broadcast_fds(const BroadcastWriter *w, int32_t *out, uint32_t cap)
  gsw_broadcast_fds: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  // int32_t gsw_broadcast_flush_due(const BroadcastWriter *w)
  gsw_broadcast_flush_due: { parameters: ["pointer"], result: "i32" },
  // int32_t gsw_broadcast_stats(const BroadcastWriter *w, uint64_t out[3])
  gsw_broadcast_stats: { parameters: ["pointer", "buffer"], result: "i32" },
  // BroadcastReader *gsw_broadcast_attach(const int32_t *fds, const uint32_t *bells, uint32_t n)
  gsw_broadcast_attach: { parameters: ["buffer", "buffer", "u32"], result: "pointer" },
  // void gsw_broadcast_reader_free(BroadcastReader *r)
  gsw_broadcast_reader_free: { parameters: ["pointer"], result: "void" },
  // int32_t gsw_broadcast_reader_info(const BroadcastReader *r, uint32_t out[3])
  gsw_broadcast_reader_info: { parameters: ["pointer", "buffer"], result: "i32" },
  // int32_t gsw_broadcast_reader_channel(const BroadcastReader *r, uint32_t ch, uint32_t out[3])
  gsw_broadcast_reader_channel: { parameters: ["pointer", "u32", "buffer"], result: "i32" },
  // int32_t gsw_broadcast_reader_follow(const BroadcastReader *r, const uint32_t *ch, uint32_t n)
  gsw_broadcast_reader_follow: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  // int32_t gsw_broadcast_reader_read(const BroadcastReader *r, uint8_t *out, uint32_t len)
  gsw_broadcast_reader_read: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  // int32_t gsw_broadcast_reader_current(const BroadcastReader *r, uint32_t ch, uint8_t *out,
  //                                      uint32_t len)
  gsw_broadcast_reader_current: {
    parameters: ["pointer", "u32", "buffer", "u32"],
    result: "i32",
  },
  // int32_t gsw_broadcast_reader_ring(const BroadcastReader *r, uint8_t *out, uint32_t len,
  //                                   uint64_t result[3])
  gsw_broadcast_reader_ring: {
    parameters: ["pointer", "buffer", "u32", "buffer"],
    result: "i32",
  },
  // int32_t gsw_broadcast_reader_bell_fd(const BroadcastReader *r, uint32_t bell)
  gsw_broadcast_reader_bell_fd: { parameters: ["pointer", "u32"], result: "i32" },
  // int32_t gsw_waitset_add_bell(const Waitset *ws, const BroadcastReader *r, uint32_t bell,
  //                              uint32_t token)
  gsw_waitset_add_bell: { parameters: ["pointer", "pointer", "u32", "u32"], result: "i32" },
  // int gsw_pidfd_open(int32_t pid)
  gsw_pidfd_open: { parameters: ["i32"], result: "i32" },
  // int32_t gsw_broadcast_reader_mark_seen(const BroadcastReader *r, uint32_t bell)
  gsw_broadcast_reader_mark_seen: { parameters: ["pointer", "u32"], result: "i32" },
  // int gsw_eventfd(void)
  gsw_eventfd: { parameters: [], result: "i32" },
  // int32_t gsw_eventfd_signal(int fd)
  gsw_eventfd_signal: { parameters: ["i32"], result: "i32" },
  // int gsw_dup(int fd)
  gsw_dup: { parameters: ["i32"], result: "i32" },
  // int32_t gsw_die_with_parent(int32_t parent, int32_t signal)
  gsw_die_with_parent: { parameters: ["i32", "i32"], result: "i32" },
  // int32_t gsw_extractor_publish_value(Extractor *e, uint32_t measurement,
  //                                     const uint8_t *data, uint32_t len, uint64_t ts_ns)
  gsw_extractor_publish_value: {
    parameters: ["pointer", "u32", "buffer", "u32", "u64"],
    result: "i32",
  },

  // Fanout *gsw_fanout_new(const SegmentReader *r)
  gsw_fanout_new: { parameters: ["pointer"], result: "pointer" },
  // void gsw_fanout_free(Fanout *f)
  gsw_fanout_free: { parameters: ["pointer"], result: "void" },
  // int32_t gsw_fanout_add(Fanout *f, uint32_t src, const SegmentWriter *w, uint32_t dst,
  //                        uint64_t min_interval_ns, uint64_t now_ns)
  gsw_fanout_add: {
    parameters: ["pointer", "u32", "pointer", "u32", "u64", "u64"],
    result: "i32",
  },
  // int32_t gsw_fanout_remove(Fanout *f, const SegmentWriter *w)
  gsw_fanout_remove: { parameters: ["pointer", "pointer"], result: "i32" },
  // int32_t gsw_fanout_pump(const Fanout *f, uint64_t now_ns, uint64_t out[3])
  gsw_fanout_pump: { parameters: ["pointer", "u64", "buffer"], result: "i32" },

  // LogQueue *gsw_logq_new(uint16_t source, uint32_t max_pending, uint32_t max_age_ms)
  gsw_logq_new: { parameters: ["u16", "u32", "u32"], result: "pointer" },
  // void gsw_logq_free(LogQueue *q)
  gsw_logq_free: { parameters: ["pointer"], result: "void" },
  // int32_t gsw_logq_connect(LogQueue *q, const uint8_t *path, uint32_t len)
  gsw_logq_connect: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  // int32_t gsw_logq_set_hello(LogQueue *q, const uint8_t *payload, uint32_t len)
  gsw_logq_set_hello: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  // int32_t gsw_logq_disconnect(LogQueue *q)
  gsw_logq_disconnect: { parameters: ["pointer"], result: "i32" },
  // int32_t gsw_logq_fd(const LogQueue *q)
  gsw_logq_fd: { parameters: ["pointer"], result: "i32" },
  // int32_t gsw_logq_forward(LogQueue *q, const uint8_t *buf, uint32_t buf_len, uint32_t slot,
  //                          const uint8_t *meta, uint32_t meta_len, uint32_t n,
  //                          uint16_t dst_port)
  gsw_logq_forward: {
    parameters: ["pointer", "buffer", "u32", "u32", "buffer", "u32", "u32", "u16"],
    result: "i32",
  },
  // int32_t gsw_logq_flush(LogQueue *q)
  gsw_logq_flush: { parameters: ["pointer"], result: "i32" },
  // int32_t gsw_logq_flush_due(LogQueue *q)
  gsw_logq_flush_due: { parameters: ["pointer"], result: "i32" },
  // int32_t gsw_logq_finish(LogQueue *q)
  gsw_logq_finish: { parameters: ["pointer"], result: "i32" },
  // int32_t gsw_logq_stats(const LogQueue *q, uint64_t out[6])
  gsw_logq_stats: { parameters: ["pointer", "buffer"], result: "i32" },

  // MqttSource *gsw_mqtt_new(const uint8_t *opts, uint32_t len, uint16_t port, uint8_t qos,
  //                          uint16_t keepalive_s)
  gsw_mqtt_new: { parameters: ["buffer", "u32", "u16", "u8", "u16"], result: "pointer" },
  // void gsw_mqtt_free(MqttSource *m)
  gsw_mqtt_free: { parameters: ["pointer"], result: "void" },
  // int32_t gsw_mqtt_service(MqttSource *m)
  gsw_mqtt_service: { parameters: ["pointer"], result: "i32" },
  // int32_t gsw_mqtt_watch(MqttSource *m, uint8_t out[12])
  gsw_mqtt_watch: { parameters: ["pointer", "buffer"], result: "i32" },
  // int32_t gsw_mqtt_recv(MqttSource *m, uint8_t *buf, uint32_t buf_len, uint32_t slot,
  //                       uint8_t *meta, uint32_t meta_len)
  gsw_mqtt_recv: {
    parameters: ["pointer", "buffer", "u32", "u32", "buffer", "u32"],
    result: "i32",
  },
  // int32_t gsw_mqtt_stats(MqttSource *m, uint64_t out[6])
  gsw_mqtt_stats: { parameters: ["pointer", "buffer"], result: "i32" },
  // int32_t gsw_mqtt_next_event(MqttSource *m, uint8_t *out, uint32_t cap)
  gsw_mqtt_next_event: { parameters: ["pointer", "buffer", "u32"], result: "i32" },

  // StreamSource *gsw_stream_new(const uint8_t spec[48], uint32_t len, const uint8_t *text,
  //                              uint32_t text_len)
  gsw_stream_new: { parameters: ["buffer", "u32", "buffer", "u32"], result: "pointer" },
  // void gsw_stream_free(StreamSource *s)
  gsw_stream_free: { parameters: ["pointer"], result: "void" },
  // int32_t gsw_stream_fd(StreamSource *s)
  gsw_stream_fd: { parameters: ["pointer"], result: "i32" },
  // int32_t gsw_stream_service(StreamSource *s)
  gsw_stream_service: { parameters: ["pointer"], result: "i32" },
  // int32_t gsw_stream_recv(StreamSource *s, uint8_t *buf, uint32_t buf_len, uint32_t slot,
  //                         uint8_t *meta, uint32_t meta_len)
  gsw_stream_recv: {
    parameters: ["pointer", "buffer", "u32", "u32", "buffer", "u32"],
    result: "i32",
  },
  // int32_t gsw_stream_stats(StreamSource *s, uint64_t out[5])
  gsw_stream_stats: { parameters: ["pointer", "buffer"], result: "i32" },
  // int32_t gsw_stream_next_event(StreamSource *s, uint8_t *out, uint32_t cap)
  gsw_stream_next_event: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  // int32_t gsw_frame_encode(const uint8_t spec[48], uint32_t len, const uint8_t *packet,
  //                          uint32_t packet_len, uint8_t *out, uint32_t out_len)
  gsw_frame_encode: {
    parameters: ["buffer", "u32", "buffer", "u32", "buffer", "u32"],
    result: "i32",
  },
  // int32_t gsw_stream_out_open(const uint8_t spec[48], uint32_t len, const uint8_t *text,
  //                             uint32_t text_len)
  gsw_stream_out_open: { parameters: ["buffer", "u32", "buffer", "u32"], result: "i32" },
  // int32_t gsw_stream_out_port(int listener)
  gsw_stream_out_port: { parameters: ["i32"], result: "i32" },
  // int32_t gsw_stream_out_accept(int listener)
  gsw_stream_out_accept: { parameters: ["i32"], result: "i32" },
  // int32_t gsw_stream_out_write(int fd, const uint8_t *data, uint32_t len)
  gsw_stream_out_write: { parameters: ["i32", "buffer", "u32"], result: "i32" },

  // Benchmark references: the hot calls' parameter types, doing nothing (see ffi/src/abi/bench.rs).
  gsw_bench_noop_publish: {
    parameters: ["pointer", "u32", "buffer", "u32", "u64", "u64"],
    result: "i32",
  },
  gsw_bench_noop_take: { parameters: ["pointer", "u32", "buffer", "u32"], result: "i32" },
  gsw_bench_noop_wait_async: {
    name: "gsw_bench_noop_wait",
    parameters: ["pointer", "buffer", "u32", "i32"],
    result: "i32",
    nonblocking: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The ABI version these bindings were written for (`ABI_VERSION` in `ffi/src/abi.rs`). */
export const ABI_VERSION = 8;

export type Symbols = Deno.DynamicLibrary<typeof symbols>["symbols"];

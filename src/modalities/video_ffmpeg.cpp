// Video decoding through ffmpeg's libraries (Debian's libavformat/libavcodec/libswscale): the
// container is opened from a path or from memory (a custom AVIOContext, so bytes from a socket
// need no temporary file), only a list of common video demuxers is allowed (no playlists that
// could open other files or URLs), and frames are decoded in order while only the planned ones
// are converted to RGB; gaps longer than kSeekGapSeconds are crossed by seeking to the keyframe
// before the next planned frame.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>

#include "af/core/error.hpp"
#include "video_decode.hpp"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

namespace af::modalities::detail {
namespace {

// Demuxers accepted: MP4/MOV, Matroska/WebM, AVI, MPEG-TS/PS, Ogg, FLV, animated GIF.
constexpr const char* kFormatWhitelist = "mov,matroska,avi,mpegts,mpeg,ogg,flv,gif";
// A planned frame further than this ahead of the last decoded one is reached by seeking.
constexpr double kSeekGapSeconds = 10.0;
constexpr int kIoBufferBytes = 64 * 1024;

std::string av_error_text(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

void quiet_ffmpeg_logs() {
  // ffmpeg reports corrupt input on stderr; the library reports it as af::Error instead.
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_QUIET); });
}

struct MemoryInput {
  const uint8_t* data;
  int64_t size;
  int64_t pos = 0;
};

int mem_read(void* opaque, uint8_t* buf, int buf_size) {
  auto* m = static_cast<MemoryInput*>(opaque);
  const int64_t n = std::min<int64_t>(buf_size, m->size - m->pos);
  if (n <= 0) return AVERROR_EOF;
  std::memcpy(buf, m->data + m->pos, size_t(n));
  m->pos += n;
  return int(n);
}

int64_t mem_seek(void* opaque, int64_t offset, int whence) {
  auto* m = static_cast<MemoryInput*>(opaque);
  whence &= ~AVSEEK_FORCE;
  if (whence == AVSEEK_SIZE) return m->size;
  const int64_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->size : 0;
  if (offset > 0 && base > m->size - offset) return AVERROR(EINVAL);
  if (base + offset < 0) return AVERROR(EINVAL);
  m->pos = base + offset;
  return m->pos;
}

struct FormatDeleter {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
struct IoDeleter {
  void operator()(AVIOContext* io) const {
    if (io) av_freep(&io->buffer);
    avio_context_free(&io);
  }
};
struct CodecDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct FrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct SwsDeleter {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};

// The container, opened with the demuxer whitelist; `io` is kept alive beside it.
struct Input {
  std::unique_ptr<MemoryInput> memory;
  std::unique_ptr<AVIOContext, IoDeleter> io;
  std::unique_ptr<AVFormatContext, FormatDeleter> format;
};

Input open_input(const VideoSource& source) {
  Input in;
  AVFormatContext* ctx = avformat_alloc_context();
  if (!ctx) fail(ErrorCode::kInternal, "video", source.origin, ": out of memory");
  AVDictionary* opts = nullptr;
  av_dict_set(&opts, "format_whitelist", kFormatWhitelist, 0);
  const char* url = nullptr;
  if (source.bytes.data() != nullptr) {
    in.memory.reset(new MemoryInput{source.bytes.data(), int64_t(source.bytes.size())});
    auto* buffer = static_cast<uint8_t*>(av_malloc(kIoBufferBytes));
    in.io.reset(avio_alloc_context(buffer, kIoBufferBytes, 0, in.memory.get(), mem_read, nullptr,
                                   mem_seek));
    if (!buffer || !in.io) {
      if (!in.io) av_free(buffer);
      avformat_free_context(ctx);
      av_dict_free(&opts);
      fail(ErrorCode::kInternal, "video", source.origin, ": out of memory");
    }
    ctx->pb = in.io.get();
    ctx->flags |= AVFMT_FLAG_CUSTOM_IO;
    av_dict_set(&opts, "protocol_whitelist", "", 0);
  } else {
    url = source.path.c_str();
    av_dict_set(&opts, "protocol_whitelist", "file", 0);
  }
  const int err = avformat_open_input(&ctx, url, nullptr, &opts);  // frees ctx on failure
  av_dict_free(&opts);
  if (err < 0) {
    fail_video(source.origin, "not a video container this build reads (" + av_error_text(err) +
                                  "; accepted: MP4/MOV, MKV/WebM, AVI, MPEG-TS/PS, Ogg, FLV, GIF)");
  }
  in.format.reset(ctx);
  const int info_err = avformat_find_stream_info(ctx, nullptr);
  if (info_err < 0) {
    fail_video(source.origin, "cannot read the stream headers (" + av_error_text(info_err) + ")");
  }
  return in;
}

double stream_fps(const AVStream* st) {
  for (AVRational r : {st->avg_frame_rate, st->r_frame_rate}) {
    if (r.num > 0 && r.den > 0) return av_q2d(r);
  }
  return 0.0;
}

// Width, height, rate and frame count from the header, checked against the limits.
VideoStreamInfo read_stream_info(const AVFormatContext* fmt, const AVStream* st,
                                 const std::string& origin, const VideoLimits& limits) {
  VideoStreamInfo info;
  info.width = st->codecpar->width;
  info.height = st->codecpar->height;
  if (info.width <= 0 || info.height <= 0) {
    fail_video(origin, "the video stream has no frame size (" + std::to_string(info.width) + "x" +
                           std::to_string(info.height) + ")");
  }
  if (uint64_t(info.width) * uint64_t(info.height) > limits.max_frame_pixels) {
    fail(ErrorCode::kOutOfRange, "video", origin, ": frame size ", info.width, "x", info.height,
         " exceeds the limit of ", limits.max_frame_pixels,
         " pixels (VideoLimits::max_frame_pixels)");
  }
  info.fps = stream_fps(st);
  if (!(info.fps >= limits.min_source_fps && info.fps <= limits.max_source_fps)) {
    fail_video(origin, "frame rate " + std::to_string(info.fps) + " is outside [" +
                           std::to_string(limits.min_source_fps) + ", " +
                           std::to_string(limits.max_source_fps) + "] (VideoLimits)");
  }
  double seconds = 0.0;
  if (st->duration != AV_NOPTS_VALUE && st->duration > 0) {
    seconds = double(st->duration) * av_q2d(st->time_base);
  } else if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0) {
    seconds = double(fmt->duration) / AV_TIME_BASE;
  }
  if (st->nb_frames > 0) {
    info.total_frames = st->nb_frames;
    seconds = std::max(seconds, double(st->nb_frames) / info.fps);
  } else {
    info.total_frames = int64_t(std::llround(seconds * info.fps));
    info.frames_estimated = true;
  }
  if (!(seconds <= limits.max_seconds)) {
    fail(ErrorCode::kOutOfRange, "video", origin, ": ", seconds, " s exceeds the limit of ",
         limits.max_seconds, " s (VideoLimits::max_seconds)");
  }
  if (info.total_frames <= 0) fail_video(origin, "the video stream has no frames");
  return info;
}

// Converts decoded frames to packed RGB24 at their own size, with the frame's colour matrix
// and range (as ffmpeg's scale filter does with its "auto" defaults).
class RgbConverter {
 public:
  Image convert(const AVFrame* f, const std::string& origin, const VideoLimits& limits) {
    if (f->width <= 0 || f->height <= 0 ||
        uint64_t(f->width) * uint64_t(f->height) > limits.max_frame_pixels) {
      fail_video(origin, "a decoded frame has an invalid size (" + std::to_string(f->width) + "x" +
                             std::to_string(f->height) + ")");
    }
    sws_.reset(sws_getCachedContext(sws_.release(), f->width, f->height, AVPixelFormat(f->format),
                                    f->width, f->height, AV_PIX_FMT_RGB24, SWS_BICUBIC, nullptr,
                                    nullptr, nullptr));
    if (!sws_) fail_video(origin, "cannot convert pixel format " + pix_fmt_name(f) + " to RGB");
    set_colorspace(f);
    const int stride = FFALIGN(f->width * 3, 64);
    buffer_.resize(size_t(stride) * f->height + 64);
    uint8_t* aligned = align64(buffer_.data());
    uint8_t* dst[4] = {aligned, nullptr, nullptr, nullptr};
    int dst_stride[4] = {stride, 0, 0, 0};
    if (sws_scale(sws_.get(), f->data, f->linesize, 0, f->height, dst, dst_stride) != f->height) {
      fail_video(origin, "pixel conversion to RGB failed");
    }
    std::vector<uint8_t> rgb(size_t(f->width) * f->height * 3);
    for (int y = 0; y < f->height; ++y) {
      std::memcpy(rgb.data() + size_t(y) * f->width * 3, aligned + size_t(y) * stride,
                  size_t(f->width) * 3);
    }
    return Image(f->width, f->height, std::move(rgb));
  }

 private:
  static uint8_t* align64(uint8_t* p) {
    return p + ((64 - reinterpret_cast<uintptr_t>(p) % 64) % 64);
  }
  static std::string pix_fmt_name(const AVFrame* f) {
    const char* name = av_get_pix_fmt_name(AVPixelFormat(f->format));
    return name ? name : std::to_string(f->format);
  }
  void set_colorspace(const AVFrame* f) {
    int* inv_table = nullptr;
    int* table = nullptr;
    int src_range = 0, dst_range = 0, brightness = 0, contrast = 0, saturation = 0;
    if (sws_getColorspaceDetails(sws_.get(), &inv_table, &src_range, &table, &dst_range,
                                 &brightness, &contrast, &saturation) < 0) {
      return;  // RGB or gray input: no matrix to set
    }
    const int cs = f->colorspace == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT : int(f->colorspace);
    if (f->color_range != AVCOL_RANGE_UNSPECIFIED) src_range = f->color_range == AVCOL_RANGE_JPEG;
    sws_setColorspaceDetails(sws_.get(), sws_getCoefficients(cs), src_range, table, dst_range,
                             brightness, contrast, saturation);
  }

  std::unique_ptr<SwsContext, SwsDeleter> sws_;
  std::vector<uint8_t> buffer_;
};

// Decodes the stream in order and hands the planned frames to the sink.
class FrameReader {
 public:
  FrameReader(AVFormatContext* fmt, int stream, AVCodecContext* codec, const VideoSource& src,
              const VideoLimits& limits, const VideoStreamInfo& info)
      : fmt_(fmt), stream_(stream), codec_(codec), src_(src), limits_(limits), info_(info) {
    const AVStream* st = fmt_->streams[stream_];
    time_base_ = av_q2d(st->time_base);
    start_pts_ = st->start_time == AV_NOPTS_VALUE ? 0 : st->start_time;
  }

  // Returns how many planned frames were delivered.
  size_t run(const std::vector<int64_t>& plan, const FrameSink& sink) {
    std::unique_ptr<AVPacket, PacketDeleter> pkt(av_packet_alloc());
    std::unique_ptr<AVFrame, FrameDeleter> frame(av_frame_alloc());
    if (!pkt || !frame) fail(ErrorCode::kInternal, "video", src_.origin, ": out of memory");
    const int64_t seek_gap = std::max<int64_t>(int64_t(kSeekGapSeconds * info_.fps), 16);
    bool eof = false;
    while (next_ < plan.size() && !eof) {
      maybe_seek(plan[next_], seek_gap);
      const int err = av_read_frame(fmt_, pkt.get());
      if (err < 0) {
        eof = true;
        avcodec_send_packet(codec_, nullptr);  // drain
      } else {
        if (++packets_ > limits_.max_packets) {
          fail(ErrorCode::kOutOfRange, "video", src_.origin, ": more than ", limits_.max_packets,
               " packets read (VideoLimits::max_packets)");
        }
        const bool ours = pkt->stream_index == stream_;
        if (ours && avcodec_send_packet(codec_, pkt.get()) < 0) ++rejected_;
        av_packet_unref(pkt.get());
        if (!ours) continue;
      }
      receive(frame.get(), plan, sink);
    }
    return next_;
  }

  int64_t last_index() const { return last_index_; }
  uint64_t rejected() const { return rejected_; }

 private:
  void maybe_seek(int64_t target, int64_t seek_gap) {
    if (target - last_index_ <= seek_gap || target == seek_target_) return;
    seek_target_ = target;
    const int64_t ts = start_pts_ + int64_t(double(target) / info_.fps / time_base_);
    if (av_seek_frame(fmt_, stream_, ts, AVSEEK_FLAG_BACKWARD) >= 0) {
      avcodec_flush_buffers(codec_);
      counted_ = -1;  // the next frame's ordinal comes from its timestamp
    }
  }

  // The frame's position in the stream: from its timestamp, or counted when it has none.
  int64_t frame_index(const AVFrame* f) {
    const int64_t pts = f->best_effort_timestamp;
    if (pts != AV_NOPTS_VALUE) {
      counted_ = std::llround(double(pts - start_pts_) * time_base_ * info_.fps);
    } else {
      counted_ = counted_ < 0 ? last_index_ + 1 : counted_ + 1;
    }
    return counted_;
  }

  void receive(AVFrame* frame, const std::vector<int64_t>& plan, const FrameSink& sink) {
    while (avcodec_receive_frame(codec_, frame) >= 0) {
      const int64_t index = frame_index(frame);
      last_index_ = std::max(last_index_, index);
      if (next_ < plan.size() && plan[next_] <= index) {
        Image rgb = converter_.convert(frame, src_.origin, limits_);
        // Every planned index up to this frame takes it (the first frame at or after each).
        while (next_ + 1 < plan.size() && plan[next_ + 1] <= index) sink(next_++, rgb);
        sink(next_++, std::move(rgb));
      }
      av_frame_unref(frame);
    }
  }

  AVFormatContext* fmt_;
  int stream_;
  AVCodecContext* codec_;
  const VideoSource& src_;
  const VideoLimits& limits_;
  const VideoStreamInfo& info_;
  double time_base_ = 0;
  int64_t start_pts_ = 0;
  size_t next_ = 0;
  int64_t last_index_ = -1;
  int64_t counted_ = -1;
  int64_t seek_target_ = -1;
  uint64_t packets_ = 0;
  uint64_t rejected_ = 0;
  RgbConverter converter_;
};

std::unique_ptr<AVCodecContext, CodecDeleter> open_decoder(const AVStream* st,
                                                           const std::string& origin) {
  const AVCodec* codec = avcodec_find_decoder(st->codecpar->codec_id);
  if (!codec) {
    fail(ErrorCode::kUnsupported, "video", origin, ": no decoder for codec ",
         avcodec_get_name(st->codecpar->codec_id));
  }
  std::unique_ptr<AVCodecContext, CodecDeleter> ctx(avcodec_alloc_context3(codec));
  if (!ctx) fail(ErrorCode::kInternal, "video", origin, ": out of memory");
  if (avcodec_parameters_to_context(ctx.get(), st->codecpar) < 0) {
    fail_video(origin, "invalid codec parameters");
  }
  ctx->thread_count = 1;  // deterministic, and the caller's threads are the parallelism
  const int err = avcodec_open2(ctx.get(), codec, nullptr);
  if (err < 0) {
    fail_video(origin, std::string("cannot open the ") + codec->name + " decoder (" +
                           av_error_text(err) + ")");
  }
  return ctx;
}

}  // namespace

VideoStreamInfo decode_video_frames_ffmpeg(const VideoSource& source, const VideoLimits& limits,
                                           const FramePlan& plan, const FrameSink& sink) {
  quiet_ffmpeg_logs();
  Input in = open_input(source);
  AVFormatContext* fmt = in.format.get();
  const int stream = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (stream < 0) fail_video(source.origin, "no video stream");
  const AVStream* st = fmt->streams[stream];
  const VideoStreamInfo info = read_stream_info(fmt, st, source.origin, limits);
  auto codec = open_decoder(st, source.origin);
  const std::vector<int64_t> wanted = plan(info);
  FrameReader reader(fmt, stream, codec.get(), source, limits, info);
  const size_t delivered = reader.run(wanted, sink);
  if (delivered == 0) {
    fail_video(source.origin, "no frame could be decoded (" + std::to_string(reader.rejected()) +
                                  " packets rejected by the decoder)");
  }
  // A count estimated from the duration may overshoot by a frame or two; video.cpp repeats the
  // last frame then. A count the header states is a promise: falling short is truncation.
  if (delivered < wanted.size() && !info.frames_estimated) {
    fail_video(source.origin, "truncated: the header promises " +
                                  std::to_string(info.total_frames) +
                                  " frames but decoding "
                                  "ended after frame " +
                                  std::to_string(reader.last_index()));
  }
  return info;
}

}  // namespace af::modalities::detail

// The one place that knows whether this build has ffmpeg (AF_HAVE_FFMPEG from CMake's AF_VIDEO).
#include "video_decode.hpp"

namespace af::modalities {

bool video_supported() {
#ifdef AF_HAVE_FFMPEG
  return true;
#else
  return false;
#endif
}

namespace detail {

VideoStreamInfo decode_video_frames(const VideoSource& source, const VideoLimits& limits,
                                    const FramePlan& plan, const FrameSink& sink) {
#ifdef AF_HAVE_FFMPEG
  return decode_video_frames_ffmpeg(source, limits, plan, sink);
#else
  (void)limits, (void)plan, (void)sink;
  decode_video_frames_unavailable(source);
#endif
}

}  // namespace detail
}  // namespace af::modalities

// What a build without ffmpeg's libraries (AF_VIDEO=OFF, or not found) does with a video: a
// clear error. Always compiled, so the unit tests check its text in every build.
#include "af/core/error.hpp"
#include "video_decode.hpp"

namespace af::modalities::detail {

VideoStreamInfo decode_video_frames_unavailable(const VideoSource& source) {
  fail(ErrorCode::kUnsupported, "video", source.origin,
       ": built without video (configure with -DAF_VIDEO=ON and Debian's libavformat-dev, "
       "libavcodec-dev, libswscale-dev and libavutil-dev)");
}

}  // namespace af::modalities::detail

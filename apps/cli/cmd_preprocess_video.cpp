// af-cli preprocess --video FILE: Qwen2-VL's video pixel values (fetch_video's sampling, then
// Qwen2VLVideoProcessor), printed as preprocess prints an image's: the shape line
// ("2240 1176"), then one line per patch row, floats as %.9g. The sampling and the grid go to
// stderr so that stdout keeps that contract.
#include <cstdio>
#include <string>

#include "af/modalities/qwen2_vl_video_processor.hpp"
#include "af/modalities/video.hpp"
#include "commands.hpp"

namespace af::cli {

int print_video_pixel_values(const VideoPreprocessOptions& o) {
  const auto processor = o.model.empty() ? modalities::Qwen2VLVideoProcessor()
                                         : modalities::Qwen2VLVideoProcessor::load(o.model);
  modalities::VideoSampling sampling = processor.default_sampling();
  sampling.fps = o.fps;
  sampling.max_frames = o.max_frames;
  sampling.nframes = o.nframes;
  const modalities::Video video = modalities::Video::load(o.video, sampling);
  const modalities::VideoPixelValues pv = processor.preprocess(video);
  std::string frames;
  for (int64_t i : video.frame_indices()) frames += (frames.empty() ? "" : " ") + std::to_string(i);
  std::fprintf(stderr,
               "video: %zu of %lld frames (%s) at %.6g fps sampled, %dx%d, video_grid_thw %lld "
               "%lld %lld, second_per_grid_t %.9g\n",
               video.frames().size(), static_cast<long long>(video.source_frames()), frames.c_str(),
               video.sample_fps(), video.width(), video.height(),
               static_cast<long long>(pv.grid_thw[0]), static_cast<long long>(pv.grid_thw[1]),
               static_cast<long long>(pv.grid_thw[2]), pv.second_per_grid_t);
  std::printf("%lld %lld\n", static_cast<long long>(pv.shape[0]),
              static_cast<long long>(pv.shape[1]));
  const size_t row = size_t(pv.shape[1]);
  std::string line;
  char number[32];
  for (size_t start = 0; start < pv.data.size(); start += row) {
    line.clear();
    for (size_t i = start; i < start + row; ++i) {
      std::snprintf(number, sizeof(number), i == start ? "%.9g" : " %.9g", double(pv.data[i]));
      line += number;
    }
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace af::cli

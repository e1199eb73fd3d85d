// `call`: one Mollie API request through the broker's ProxyService (Call), or a list followed
// page by page (CallPaged, printed as NDJSON while the pages arrive). Runs on the main thread.
// Mollie's body goes to stdout exactly as received; a non-2xx status is reported on stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <utility>

#include "cli.h"
#include "connectbroker/client.h"

namespace connectbroker::cli {
namespace {

namespace cb = ::connectbroker::client;
namespace v1 = ::connectbroker::v1;

// Well above what Mollie accepts in a request body; only guards against a wrong file.
constexpr size_t kMaxDataBytes = 16 << 20;

int Usage(const std::string& message) {
  std::cerr << "connect-broker: call: " << message << "\n";
  return kExitUsage;
}

void ReportHttpError(int status, const std::string& body, std::optional<int> page) {
  std::cerr << "connect-broker: call: "
            << (page.has_value() ? "page " + std::to_string(*page) + ": " : "")
            << DescribeHttpError(status, body) << "\n";
}

cb::BrokerClient MakeClient(const Flags& f) {
  return cb::BrokerClient(
      cb::CreateChannel(f.address), f.address,
      std::chrono::milliseconds(static_cast<long long>(f.timeout_seconds * 1000)));
}

int Call(const Flags& f, const CallArgs& args) {
  cb::BrokerClient client = MakeClient(f);
  absl::StatusOr<v1::ProxyResponse> response = client.Call(BuildProxyRequest(args));
  if (!response.ok()) {
    return Fail("call", response.status());
  }
  const std::string& body = response->body();
  if (args.json) {
    const std::string line = ProxyResponseToJson(*response);
    std::cout << (args.pretty ? ReformatJson(line, 2) : line) << "\n";
  } else {
    if (args.include) {
      std::cout << FormatResponseHead(response->status(), response->headers());
    }
    if (args.pretty && !body.empty() && ValidateJson(body).ok()) {
      std::cout << ReformatJson(body, 2) << "\n";
    } else {
      std::cout << body;  // exactly as received: no newline added
    }
  }
  std::cout.flush();
  if (!IsSuccess(response->status())) {
    ReportHttpError(response->status(), body, std::nullopt);
    return kExitHttpError;
  }
  return 0;
}

int CallPaged(const Flags& f, const CallArgs& args) {
  cb::BrokerClient client = MakeClient(f);
  size_t printed = 0;
  bool enough = false;  // --max-items reached here, whatever the daemon still sends
  std::optional<int> http_error;
  absl::Status s = client.CallPaged(
      BuildProxyPagedRequest(args), [&](const v1::ProxyPage& page) -> absl::Status {
        const bool success = IsSuccess(page.status());
        size_t n = static_cast<size_t>(page.items_size());
        if (args.max_items > 0) {
          n = std::min(n, static_cast<size_t>(args.max_items) - printed);
        }
        if (args.json) {
          std::cout << ProxyPageToJson(page, n) << "\n";
        } else if (success) {
          for (size_t i = 0; i < n; ++i) {
            std::cout << ItemLine(page.items(static_cast<int>(i))) << "\n";
          }
        }
        printed += n;
        // Flushed per page, so that a consumer sees the items as they arrive.
        std::cout.flush();
        if (!std::cout) {
          return absl::CancelledError("stdout was closed");
        }
        if (!success) {
          http_error = page.status();
          ReportHttpError(page.status(), page.body(), page.page_number());
        } else if (args.max_items > 0 && printed >= static_cast<size_t>(args.max_items)) {
          enough = true;
          return absl::CancelledError("--max-items reached");
        }
        return absl::OkStatus();
      });
  if (!s.ok() && !enough) {
    return Fail("call", s);
  }
  return http_error.has_value() ? kExitHttpError : 0;
}

}  // namespace

absl::StatusOr<std::string> ReadDataFile(const std::string& path, size_t limit) {
  std::string contents(limit + 1, '\0');
  size_t got = 0;
  if (path == "-") {
    std::cin.read(contents.data(), static_cast<std::streamsize>(contents.size()));
    if (std::cin.bad()) {
      return absl::InvalidArgumentError("cannot read the request body from stdin");
    }
    got = static_cast<size_t>(std::cin.gcount());
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::InvalidArgumentError("cannot read " + path);
    }
    in.read(contents.data(), static_cast<std::streamsize>(contents.size()));
    if (in.bad()) {
      return absl::InvalidArgumentError("cannot read " + path);
    }
    got = static_cast<size_t>(in.gcount());
  }
  if (got > limit) {
    return absl::InvalidArgumentError("--data-file " + path + " is larger than " +
                                      std::to_string(limit) + " bytes");
  }
  contents.resize(got);
  return contents;
}

int RunCallCommand(const Flags& f) {
  CallArgs args = f.call;
  if (!f.data_file.empty()) {
    absl::StatusOr<std::string> data = ReadDataFile(f.data_file, kMaxDataBytes);
    if (!data.ok()) {
      return Usage(std::string(data.status().message()));
    }
    args.data = std::move(*data);
  }
  absl::StatusOr<std::string> method = ValidateCallArgs(args);
  if (!method.ok()) {
    return Usage(std::string(method.status().message()));
  }
  args.method = *method;
  return args.paged ? CallPaged(f, args) : Call(f, args);
}

}  // namespace connectbroker::cli

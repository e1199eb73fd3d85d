// The admin commands of the connect-broker CLI that change or watch grants: revoke, delete,
// import, events, stats. Same conventions as the others: results on stdout, one error line on
// stderr, exit 0/1/2/3.
#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "cli.h"
#include "connectbroker/client.h"

namespace connectbroker::cli {
namespace {

namespace cb = ::connectbroker::client;
namespace v1 = ::connectbroker::v1;

int Usage(std::string_view command, const std::string& message) {
  std::cerr << "connect-broker: " << command << ": " << message << "\n";
  return kExitUsage;
}

cb::BrokerClient MakeClient(const Flags& f) {
  return cb::BrokerClient(
      cb::CreateChannel(f.address), f.address,
      std::chrono::milliseconds(static_cast<long long>(f.timeout_seconds * 1000)));
}

int PrintMerchant(std::string_view command, const absl::StatusOr<v1::Merchant>& merchant,
                  const Flags& f) {
  if (!merchant.ok()) {
    return Fail(command, merchant.status());
  }
  std::cout << (f.json ? cb::MerchantToJson(*merchant)
                       : cb::FormatMerchantLine(*merchant, std::chrono::system_clock::now()))
            << "\n";
  return 0;
}

int Events(const Flags& f) {
  // Before the channel exists, so that gRPC's threads inherit the blocked signals.
  cb::WatchCanceller canceller;
  std::optional<InterruptWatcher> interrupts;
  if (f.follow) {
    interrupts.emplace([&canceller] { canceller.Cancel(); });
  }
  cb::BrokerClient client = MakeClient(f);
  v1::WatchEventsRequest request;
  request.set_after_sequence(f.after_sequence);
  request.set_organization_id(f.org);
  request.set_no_follow(!f.follow);
  absl::Status s = client.WatchEvents(
      request,
      [&f](const v1::Event& e) {
        // Flushed per event: a follower piped into another program sees each one at once.
        std::cout << (f.json ? cb::EventToJson(e) : cb::FormatEventLine(e)) << std::endl;
      },
      &canceller);
  if (!s.ok()) {
    return Fail("events", s);
  }
  return 0;
}

}  // namespace

int Fail(std::string_view command, const absl::Status& status) {
  std::cerr << "connect-broker: " << command << ": " << absl::StatusCodeToString(status.code())
            << ": " << status.message() << "\n";
  return cb::IsUnreachable(status) ? kExitUnreachable : kExitError;
}

bool IsAdminCommand(const std::string& command) {
  return command == "revoke" || command == "delete" || command == "import" || command == "events" ||
         command == "stats";
}

int RunAdminCommand(const std::string& command, const Flags& f) {
  if (command == "events") {
    return Events(f);
  }
  // Local checks first: nothing reaches the daemon when they fail.
  if (command == "delete" && !f.yes) {
    return Usage(command, "refusing to delete without --yes");
  }
  v1::ImportMerchantRequest import_request;
  if (command == "import") {
    absl::StatusOr<std::string> token = ReadRefreshToken(f.refresh_token_file);
    if (!token.ok()) {
      return Usage(command, std::string(token.status().message()));
    }
    import_request.set_refresh_token(std::move(*token));
    import_request.set_redirect_uri(f.redirect_uri);
    import_request.set_account_ref(f.account_ref);
  }
  cb::BrokerClient client = MakeClient(f);
  if (command == "revoke") {
    return PrintMerchant(command, client.RevokeMerchant(f.org), f);
  }
  if (command == "import") {
    return PrintMerchant(command, client.ImportMerchant(import_request), f);
  }
  if (command == "delete") {
    absl::Status s = client.DeleteMerchant(f.org);
    if (!s.ok()) {
      return Fail(command, s);
    }
    std::cout << "deleted " << f.org << "\n";
    return 0;
  }
  if (command == "stats") {
    auto stats = client.GetStats();
    if (!stats.ok()) {
      return Fail(command, stats.status());
    }
    std::cout << (f.json ? cb::StatsToJson(*stats) + "\n" : cb::FormatStats(*stats));
    return 0;
  }
  return Usage(command, "unknown command");
}

}  // namespace connectbroker::cli

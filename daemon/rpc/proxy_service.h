// ProxyService (connectbroker.v1): Mollie REST calls for a merchant, the token injected by the
// broker (daemon/proxy). Call is a unary reactor finished from the proxy's strand; CallPaged is a
// write reactor that fetches one page, writes it, and fetches the next only after the write
// completed (so a slow reader holds at most one page). Never blocks a gRPC thread.
#pragma once

#include "connectbroker/v1/proxy.grpc.pb.h"
#include "daemon/common/clock.h"
#include "daemon/proxy/proxy.h"

namespace connectbroker::rpc {

class ProxyServiceImpl final : public connectbroker::v1::ProxyService::CallbackService {
 public:
  ProxyServiceImpl(proxy::Proxy& proxy, const Clock& clock) : proxy_(proxy), clock_(clock) {}

  // connectbroker::v1::ProxyService::CallbackService
  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext* context,
                                 const connectbroker::v1::ProxyRequest* request,
                                 connectbroker::v1::ProxyResponse* response) override;
  grpc::ServerWriteReactor<connectbroker::v1::ProxyPage>* CallPaged(
      grpc::CallbackServerContext* context,
      const connectbroker::v1::ProxyPagedRequest* request) override;

 private:
  proxy::Proxy& proxy_;
  const Clock& clock_;
};

}  // namespace connectbroker::rpc

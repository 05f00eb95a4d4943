"""cdi-apiserver: CDI's admission webhooks and the aggregated `upload.cdi.kubevirt.io` API on a cluster.

`cdi apiserver` (`cdi.cli.apiserver`) runs it against a real API server. The parts: `server` (the aiohttp
application, TLS, routes), `webhooks` (AdmissionReview handlers calling `cdi.admission`), `cloneauth`
(the datavolume-mutate webhook's clone authorization and token),
`admissionreview` (the pure AdmissionReview translation), `tokenrequest` (the pure UploadTokenRequest
answer, which the embedded store gives too), `frontproxy` (who is asking, and may they), `discovery`
(discovery and OpenAPI documents), `signingkey` (Secret `cdi-api-signing-key`) and `status` (v1 Status
objects). Nothing here imports a cluster backend: the entrypoint passes one in.

Kept light on purpose: the embedded store imports `tokenrequest` on every CLI command's path.
"""

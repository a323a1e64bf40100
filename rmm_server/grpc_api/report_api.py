"""Reports as operators ask for them (docs/desk.md). The logic is rmm_server.desk.reports; these
only convert. Reading a report is a viewer's, as reading contracts and tickets is."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from functools import cached_property

import grpc.aio

from rmm_proto import operator_pb2
from rmm_server.desk.report_html import render_html
from rmm_server.desk.reports import Reports
from rmm_server.storage import Store

DEFAULT_LIMIT = 10


class ReportApi:
    """OperatorService mixin; built from the servicer's store and clock."""

    store: Store
    clock: Callable[[], float]

    @cached_property
    def reports(self) -> Reports:
        """Contract and trend reports over the servicer's store."""
        return Reports(self.store, getattr(self, "clock", time.time))

    async def GetContractReport(
        self, request: operator_pb2.ContractReportRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ContractReportResponse:
        def build() -> operator_pb2.ContractReportResponse:
            report = self.reports.contract(request.client, request.month, request.time_zone)
            return operator_pb2.ContractReportResponse(
                report_json=json.dumps(report, allow_nan=False),
                html=render_html(report) if request.html else "",
            )

        # Encoding and rendering too, off the event loop, which also serves the agents' report
        # streams: the page of a client of a thousand agents takes about 11 ms to render.
        return await asyncio.to_thread(build)

    async def GetTrends(
        self, request: operator_pb2.TrendsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.TrendsResponse:
        report = await asyncio.to_thread(
            self.reports.trends,
            request.since_seconds,
            request.client,
            request.limit or DEFAULT_LIMIT,
        )
        return operator_pb2.TrendsResponse(report_json=json.dumps(report, allow_nan=False))

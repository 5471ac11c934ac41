"""Our own A4 PDF of an invoice, for invoices the gateway has no PDF for (the local gateway, drafts).

Built with reportlab's platypus from the mirrored rows only: nothing is fetched from the gateway."""

from __future__ import annotations

import io
from datetime import datetime
from html import escape

from django.utils import timezone
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing_portal.models import Invoice
from billing_portal.templatetags.periods import format_period
from plans.money import format_money

INK = colors.HexColor("#141a2e")
MUTED = colors.HexColor("#5d6680")
BORDER = colors.HexColor("#e2e5ef")
SURFACE_2 = colors.HexColor("#f1f3f9")
SUCCESS = colors.HexColor("#0f7b4f")
MARGIN = 18 * mm


def _day(value: datetime | None) -> str:
    if value is None:
        return "\N{EM DASH}"
    local = timezone.localtime(value)
    return f"{local.day} {local:%b %Y}"


def invoice_pdf(*, invoice: Invoice) -> bytes:
    """The invoice as PDF bytes. Page streams are left uncompressed: the files are small and their
    text stays searchable as plain bytes."""
    buffer = io.BytesIO()
    number = str(invoice)
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=f"Invoice {number}",
        author="Allowance",
        subject=f"Invoice {number} for {invoice.tenant.name}",
        pageCompression=0,
    )
    styles = getSampleStyleSheet()
    body = ParagraphStyle(
        "body", parent=styles["Normal"], fontName="Helvetica", fontSize=9.5, leading=13, textColor=INK
    )
    muted = ParagraphStyle("muted", parent=body, textColor=MUTED, fontSize=8.5)
    title = ParagraphStyle("title", parent=body, fontName="Helvetica-Bold", fontSize=20, leading=24)
    right = ParagraphStyle("right", parent=body, alignment=TA_RIGHT)

    def money(amount: int) -> str:
        return format_money(amount, invoice.currency)

    story: list = [
        Paragraph("Invoice", title),
        Paragraph(escape(number), ParagraphStyle("number", parent=body, fontSize=12, leading=16)),
        Spacer(1, 6 * mm),
    ]
    facts = [
        ("Billed to", escape(invoice.tenant.name)),
        ("Status", escape(invoice.get_status_display())),
        ("Issued", _day(invoice.issued_at)),
        ("Paid", _day(invoice.paid_at)),
        ("Service period", format_period(invoice.service_period_start, invoice.service_period_end)),
        ("Currency", invoice.currency.upper()),
    ]
    facts_table = Table(
        [[Paragraph(label, muted), Paragraph(value, body)] for label, value in facts],
        colWidths=[30 * mm, None],
        hAlign="LEFT",
    )
    facts_table.setStyle(
        TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)])
    )
    story += [facts_table, Spacer(1, 8 * mm)]

    rows = [[Paragraph("<b>Description</b>", body), Paragraph("<b>Period</b>", body), "Qty", "Amount"]]
    for line in invoice.lines.all():
        rows.append(
            [
                Paragraph(escape(line.description), body),
                Paragraph(format_period(line.period_start, line.period_end), muted),
                str(line.quantity),
                money(line.amount),
            ]
        )
    if len(rows) == 1:
        rows.append([Paragraph("No line items.", muted), "", "", ""])
    width = A4[0] - 2 * MARGIN
    lines_table = Table(rows, colWidths=[width - 105 * mm, 55 * mm, 15 * mm, 35 * mm], repeatRows=1)
    lines_table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), "Helvetica", 9.5),
                ("FONT", (2, 0), (-1, 0), "Helvetica-Bold", 9.5),
                ("TEXTCOLOR", (0, 0), (-1, -1), INK),
                ("BACKGROUND", (0, 0), (-1, 0), SURFACE_2),
                ("LINEBELOW", (0, 0), (-1, -1), 0.5, BORDER),
                ("ALIGN", (2, 0), (-1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        )
    )
    story += [lines_table, Spacer(1, 6 * mm)]

    totals = [
        ("Subtotal", money(invoice.subtotal)),
        ("Tax", money(invoice.tax)),
        ("Total", money(invoice.total)),
        # The customer's balance, as Stripe's invoice shows it (starting and ending balance).
        *(
            [("Paid from your credit balance", money(invoice.credit_applied))]
            if invoice.credit_applied
            else []
        ),
        *([("Added to your credit balance", money(invoice.credit_added))] if invoice.credit_added else []),
        ("Amount paid", money(invoice.amount_paid)),
        ("Amount remaining", money(invoice.amount_remaining)),
        # A refund stays on the paid invoice's payment (the invoice stays paid), as the Invoices list
        # and the CSV show it; a credit note is shown apart.
        *([("Refunded", money(invoice.amount_refunded))] if invoice.amount_refunded else []),
        *([("Credit notes", money(invoice.amount_credited))] if invoice.amount_credited else []),
    ]
    totals_table = Table(
        [
            [Paragraph(f"<b>{label}</b>" if label == "Total" else label, right), Paragraph(value, right)]
            for label, value in totals
        ],
        colWidths=[65 * mm, 35 * mm],  # room for "Paid from your credit balance" on one line
        hAlign="RIGHT",
    )
    totals_table.setStyle(
        TableStyle(
            [
                ("LINEABOVE", (0, 2), (-1, 2), 0.75, INK),
                ("LINEABOVE", (0, 3), (-1, 3), 0.5, BORDER),
                ("RIGHTPADDING", (-1, 0), (-1, -1), 0),
            ]
        )
    )
    story.append(totals_table)

    paid = invoice.status == Invoice.Status.PAID

    def decorate(canvas: Canvas, document: SimpleDocTemplate) -> None:
        canvas.saveState()
        page_width, page_height = A4
        if paid:
            # The "PAID" stamp, top right of every page.
            canvas.setStrokeColor(SUCCESS)
            canvas.setFillColor(SUCCESS)
            canvas.setLineWidth(2)
            canvas.roundRect(
                page_width - MARGIN - 42 * mm, page_height - MARGIN - 16 * mm, 42 * mm, 14 * mm, 3 * mm
            )
            canvas.setFont("Helvetica-Bold", 20)
            canvas.drawCentredString(page_width - MARGIN - 21 * mm, page_height - MARGIN - 11 * mm, "PAID")
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(MUTED)
        canvas.drawString(MARGIN, MARGIN / 2, f"Invoice {number} · {invoice.tenant.name}")
        canvas.drawRightString(page_width - MARGIN, MARGIN / 2, f"Page {document.page}")
        canvas.restoreState()

    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()
